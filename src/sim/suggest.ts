/*
 * `--suggest --slo p95=30s`: for each pool, the cheapest minIdle / idleTimeout (and office-hours
 * schedule) whose simulated queue wait meets the SLO. Pools share nothing in the simulation
 * (own queue, own runners, own cap), so each is searched alone over its own jobs. Candidates
 * are ranked by cost, then runner-hours (the same when no price is set), then the wait.
 */
import type { PoolConfig } from '../config/schema.js';
import { localTime, type MinIdleScheduleInput } from '../config/min-idle-schedule.js';
import { Simulation } from './simulation.js';
import { policyPools, simPools, type SimSpec } from './spec.js';
import type { Fitted } from './provider-model.js';
import type { PolicyFigures } from './figures.js';
import type { TraceJob } from './trace.js';
import { parseDuration } from '../lib/duration.js';

export type Quantile = 'p50' | 'p95' | 'p99' | 'max';

export function parseSlo(s: string): { q: Quantile; ms: number } | string {
  const m = /^(p50|p95|p99|max)=(.+)$/.exec(s.trim());
  if (!m) return `--slo ${s}: use p50=, p95=, p99= or max= and a duration, e.g. p95=30s`;
  const ms = parseDuration(m[2]!);
  if (ms === undefined) return `--slo ${s}: ${JSON.stringify(m[2])} is not a duration (30s, 2m, or milliseconds)`;
  return { q: m[1] as Quantile, ms };
}

export interface Candidate {
  fields: { minIdle: number; idleTimeout: number; minIdleSchedule?: MinIdleScheduleInput };
  figures: PolicyFigures;
  meets: boolean;
}

export interface Suggestion {
  pool: string;
  slo: { q: Quantile; ms: number };
  current: Candidate;
  best: Candidate | undefined;
  /** the lowest wait found, when nothing meets the SLO */
  closest: Candidate;
  evaluated: number;
}

const IDLE_TIMEOUTS = [60_000, 120_000, 300_000, 600_000, 1_200_000, 1_800_000];
const MIN_IDLES = [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32];

/** The busy window of a pool's jobs in `timeZone`: hours with at least a quarter of the busiest hour's arrivals. */
export function busyWindow(jobs: TraceJob[], timeZone: string): MinIdleScheduleInput['windows'][number] | undefined {
  const byHour = new Array(24).fill(0);
  const byDay = new Array(7).fill(0);
  for (const j of jobs) {
    const { day, minute } = localTime(j.arrival, timeZone);
    byHour[Math.floor(minute / 60)]++;
    byDay[day]++;
  }
  const peak = Math.max(...byHour);
  if (peak === 0) return undefined;
  const busy = byHour.map((n, h) => (n >= peak / 4 ? h : -1)).filter((h) => h >= 0);
  const from = busy[0]!;
  const to = busy[busy.length - 1]! + 1;
  if (to - from >= 24) return undefined; // busy all day: a plain minIdle does it
  const weekday = (byDay[1] + byDay[2] + byDay[3] + byDay[4] + byDay[5]) / 5;
  const weekend = (byDay[0] + byDay[6]) / 2;
  const hh = (h: number) => `${String(h).padStart(2, '0')}:00`;
  return { days: weekend < weekday / 4 ? 'mon-fri' : 'daily', from: hh(from), to: hh(to), minIdle: 1 };
}

export function suggest(input: { base: Record<string, unknown>[]; spec: SimSpec; jobs: TraceJob[]; fitted?: Fitted; slo: { q: Quantile; ms: number }; timeZone: string; onProgress?: (pool: string, done: number, total: number) => void }): Suggestion[] {
  const { spec, slo } = input;
  const current = policyPools(input.base, { name: 'current', pools: {} }, 'pools');
  return current.map((pool, index) => {
    const jobs = input.jobs.filter((j) => j.pool === pool.name);
    const base = input.base[index]!;
    const run = (fields: Candidate['fields'] | undefined): Candidate => {
      const overrides = fields ? { minIdle: fields.minIdle, idleTimeout: fields.idleTimeout, ...(fields.minIdleSchedule ? { minIdleSchedule: fields.minIdleSchedule } : { minIdleSchedule: undefined }) } : {};
      const [config] = policyPools([base], { name: 'candidate', pools: { [pool.name]: overrides } }, 'candidate') as [PoolConfig];
      const r = new Simulation(simPools([config], spec, input.fitted), jobs, { seed: spec.seed, tickMs: spec.tick, sloMs: slo.ms, warmupMs: spec.warmup, samples: 2 }).run();
      const figures = r.pools[pool.name]!;
      return { fields: fields ?? { minIdle: config.minIdle, idleTimeout: config.idleTimeout, ...(config.minIdleSchedule ? { minIdleSchedule: config.minIdleSchedule } : {}) }, figures, meets: figures.wait[slo.q] <= slo.ms };
    };
    const candidates: Candidate['fields'][] = [];
    const minIdles = MIN_IDLES.filter((n) => n <= pool.maxRunners);
    for (const idleTimeout of IDLE_TIMEOUTS) for (const minIdle of minIdles) candidates.push({ minIdle, idleTimeout });
    const window = busyWindow(jobs, input.timeZone);
    if (window)
      for (const idleTimeout of IDLE_TIMEOUTS)
        for (const minIdle of minIdles.filter((n) => n > 0)) candidates.push({ minIdle: 0, idleTimeout, minIdleSchedule: { timeZone: input.timeZone, windows: [{ ...window, minIdle }] } });
    const now = run(undefined);
    const results: Candidate[] = [];
    candidates.forEach((c, i) => {
      results.push(run(c));
      input.onProgress?.(pool.name, i + 1, candidates.length);
    });
    const rank = (a: Candidate, b: Candidate) => a.figures.cost - b.figures.cost || a.figures.runnerHours - b.figures.runnerHours || a.figures.wait[slo.q] - b.figures.wait[slo.q];
    const meeting = results.filter((c) => c.meets).sort(rank);
    const closest = [...results].sort((a, b) => a.figures.wait[slo.q] - b.figures.wait[slo.q] || rank(a, b))[0]!;
    return { pool: pool.name, slo, current: now, best: meeting[0], closest, evaluated: results.length };
  });
}
