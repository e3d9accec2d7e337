/*
 * The `runyard simulate` command: reads the trace and the pools, runs the policies (or the
 * search), prints the figures. Bad input exits 2 naming what is wrong; the output on stdout
 * depends only on the input and the seed, so two runs give the same bytes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { bad } from './output.js';
import { parseDuration } from '../lib/duration.js';
import { routeLabels, isSelfHosted } from '../github/routing.js';
import type { Pool } from '../store/queries/pools.js';
import { poolSchema } from '../config/schema.js';
import { parseTrace, detectFormat, toJsonl, TraceError, type TraceFormat, type TraceJob } from '../sim/trace.js';
import { parseLatency, type Fitted, type Latency } from '../sim/provider-model.js';
import { parseSets, readPools, readSpec, SpecError, type Policy } from '../sim/spec.js';
import { readStoreAt } from '../sim/store-trace.js';
import { compare } from '../sim/compare.js';
import { reportJson, reportTable, fmtMs } from '../sim/report-text.js';
import { reportHtml } from '../sim/report-html.js';
import { parseSlo, suggest, type Suggestion } from '../sim/suggest.js';
import { formatTable } from './output.js';
import { validTimeZone } from '../config/min-idle-schedule.js';

export interface SimulateOptions {
  format?: string;
  fromStore?: boolean;
  since: string;
  dataDir: string;
  config?: string;
  spec?: string;
  set?: string[];
  startLatency?: string;
  seed?: string;
  slo?: string;
  suggest?: boolean;
  tz: string;
  json?: boolean;
  html?: string;
  exportTrace?: string;
  progress: boolean;
}

const DEFAULT_POOLS = [{ name: 'local', provider: 'process', maxJobsPerRunner: 2, maxRunners: 4 }];

export async function runSimulate(traceFile: string | undefined, o: SimulateOptions): Promise<void> {
  try {
    await simulate(traceFile, o);
  } catch (err) {
    if (err instanceof SpecError || err instanceof TraceError) throw bad(err.message);
    throw err;
  }
}

async function simulate(traceFile: string | undefined, o: SimulateOptions): Promise<void> {
  if (!traceFile && !o.fromStore) throw bad('give a trace file (JSONL, CSV or GitHub workflow-job JSON), or --from-store');
  if (traceFile && o.fromStore) throw bad('give either a trace file or --from-store, not both');
  if (o.format && !['jsonl', 'csv', 'github'].includes(o.format)) throw bad(`--format ${o.format}: use jsonl, csv or github`);
  if (!validTimeZone(o.tz)) throw bad(`--tz ${o.tz}: unknown IANA time zone (e.g. Europe/Berlin, UTC)`);
  const spec = readSpec(o.spec);
  if (o.seed !== undefined) {
    if (!/^\d{1,10}$/.test(o.seed) || Number(o.seed) > 2 ** 32 - 1) throw bad(`--seed ${o.seed}: use a whole number from 0 to 4294967295`);
    spec.seed = Number(o.seed);
  }
  let sloTarget: ReturnType<typeof parseSlo> | undefined;
  if (o.slo !== undefined) {
    sloTarget = o.slo.includes('=') ? parseSlo(o.slo) : (() => {
      const ms = parseDuration(o.slo!);
      return ms === undefined ? `--slo ${o.slo}: use a duration (30s) or QUANTILE=DURATION (p95=30s)` : { q: 'p95' as const, ms };
    })();
    if (typeof sloTarget === 'string') throw bad(sloTarget);
    spec.slo = sloTarget.ms;
  }
  if (o.suggest && !sloTarget) throw bad('--suggest needs --slo, e.g. --slo p95=30s');
  let latencyFlag: Latency | 'fit' | undefined;
  if (o.startLatency !== undefined) {
    const l = o.startLatency === 'fit' ? 'fit' : parseLatency(o.startLatency);
    if (typeof l === 'string' && l !== 'fit') throw bad(`--start-latency: ${l}`);
    latencyFlag = l;
  }

  const progress = o.progress ? (msg: string) => process.stderr.write(`simulate: ${msg}\n`) : undefined;
  const store = { url: process.env.RUNYARD_DATABASE_URL || process.env.RUNYARD_STORE_URL || undefined, dataDir: o.dataDir };

  // --- the trace and the pools -------------------------------------------------------------
  let jobs: TraceJob[];
  let base: Record<string, unknown>[] | undefined = o.config ? readPools(o.config) : undefined;
  let fitted: Fitted = {};
  let end: number | undefined;
  if (o.fromStore) {
    const since = parseDuration(o.since);
    if (since === undefined || since <= 0) throw bad(`--since ${o.since}: use a duration such as 24h or 7d`);
    const until = Date.now();
    progress?.(`reading the store${store.url ? '' : ` in ${o.dataDir}`} since ${new Date(until - since).toISOString()}`);
    const t = await readStoreAt(store, until - since, until);
    jobs = t.jobs;
    end = until;
    fitted = { startLatency: t.startLatency, claimGap: t.claimGap };
    base ??= t.pools.length ? t.pools : undefined;
    progress?.(`${t.jobs.length} jobs${t.skipped ? `, ${t.skipped} cancelled before they ran (left out)` : ''}${t.unfinished ? `, ${t.unfinished} not finished yet (left out)` : ''}; ${fitted.startLatency?.kind === 'empirical' ? fitted.startLatency.samples.length : 0} runner starts`);
  } else {
    let text: string;
    try {
      text = readFileSync(traceFile === '-' ? 0 : traceFile!, 'utf8');
    } catch (err) {
      throw bad(`cannot read ${traceFile}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
    const format = (o.format as TraceFormat | undefined) ?? detectFormat(traceFile!, text);
    let parsed;
    try {
      parsed = parseTrace(text, format, traceFile === '-' ? 'stdin' : traceFile!);
    } catch (err) {
      if (err instanceof SyntaxError) throw bad(`${traceFile}: not valid ${format} JSON: ${err.message}`);
      throw err;
    }
    jobs = parsed.jobs;
    if (parsed.skipped) progress?.(`${parsed.skipped} jobs never ran (left out)`);
    if (latencyFlag === 'fit' && jobs.length) {
      const t = await readStoreAt(store, jobs[0]!.arrival - 3_600_000, jobs[jobs.length - 1]!.arrival + 3_600_000);
      fitted = { startLatency: t.startLatency, claimGap: t.claimGap };
    }
  }
  if (latencyFlag === 'fit' && !fitted.startLatency) throw bad('--start-latency fit: the store has no registered runners in the trace\'s window to fit from');
  if (latencyFlag && latencyFlag !== 'fit') spec.startLatency = latencyFlag;
  base ??= DEFAULT_POOLS;
  jobs = route(jobs, base, progress);
  if (jobs.length === 0) throw bad('the trace holds no jobs to simulate');
  if (o.exportTrace) writeFileSync(o.exportTrace, toJsonl(jobs));

  // --- policies or the search --------------------------------------------------------------
  if (o.suggest) {
    const found = suggest({ base, spec, jobs, fitted, slo: sloTarget as Exclude<typeof sloTarget, string | undefined>, timeZone: o.tz, onProgress: progress && throttle((pool, d, n) => progress(`suggest ${pool}: ${d}/${n} candidates`)) });
    process.stdout.write(o.json ? JSON.stringify(found, null, 2) + '\n' : suggestionText(found));
    return;
  }
  const policies: Policy[] = spec.policies.length ? [...spec.policies] : [{ name: 'current', pools: {} }];
  if (o.set?.length) policies.push({ name: 'with --set', pools: parseSets(o.set) });
  const report = compare({ base, spec, policies, jobs, fitted, ...(end !== undefined ? { end } : {}), onProgress: progress && throttle((p, f) => progress(`${p}: ${Math.min(100, Math.round(f * 100))}% of the trace`)) });
  const table = reportTable(report);
  if (o.html) writeFileSync(o.html, reportHtml(report, table));
  process.stdout.write(o.json ? reportJson(report) : table);
}

/** Jobs without a pool go where the server would route them by labels (GitHub traces). */
function route(jobs: TraceJob[], base: Record<string, unknown>[], progress?: (m: string) => void): TraceJob[] {
  const pools = base.map((p) => ({ name: String(p.name), config: poolSchema.parse(p) }) as Pool);
  const names = new Set(pools.map((p) => p.name));
  const out: TraceJob[] = [];
  let hosted = 0;
  jobs.forEach((j, i) => {
    if (j.pool !== undefined) {
      if (!names.has(j.pool)) throw bad(`job ${i + 1} of the trace is for pool ${j.pool}, which the pools given do not define (${[...names].join(', ')}); pass --config`);
      out.push(j);
      return;
    }
    if (!isSelfHosted(j.labels) && j.labels.length) {
      hosted++;
      return;
    }
    const r = routeLabels(pools, j.labels);
    if (!r) throw bad(`job ${i + 1} of the trace (labels ${j.labels.join(', ')}): no pool serves these labels`);
    out.push({ ...j, pool: r.pool.name });
  });
  if (hosted) progress?.(`${hosted} jobs were for GitHub-hosted runners (no self-hosted label): left out`);
  return out;
}

function throttle<A extends unknown[]>(fn: (...a: A) => void): (...a: A) => void {
  let last = 0;
  return (...a: A) => {
    const now = performance.now();
    if (now - last < 1000) return;
    last = now;
    fn(...a);
  };
}

function suggestionText(found: Suggestion[]): string {
  const out: string[] = [];
  for (const s of found) {
    const f = (c: Suggestion['current']) => [fmtMs(c.figures.wait[s.slo.q]), c.figures.overSlo, c.figures.runnerHours.toFixed(2), c.figures.idleRunnerHours.toFixed(2), c.figures.cost.toFixed(2), c.figures.peakRunners];
    const pick = s.best ?? s.closest;
    out.push(`pool ${s.pool}: ${s.best ? `cheapest config with ${s.slo.q} wait <= ${fmtMs(s.slo.ms)}` : `no config meets ${s.slo.q} <= ${fmtMs(s.slo.ms)} (maxRunners caps it); the lowest wait found`} (${s.evaluated} evaluated)\n`);
    out.push(formatTable(['', `wait ${s.slo.q}`, 'over SLO', 'runner-hours', 'idle runner-hours', 'cost', 'peak'], [['current', ...f(s.current)], [s.best ? 'suggested' : 'closest', ...f(pick)]]));
    out.push(`\n  - name: ${s.pool}\n    minIdle: ${pick.fields.minIdle}\n    idleTimeout: ${fmtMs(pick.fields.idleTimeout)}\n`);
    const sch = pick.fields.minIdleSchedule;
    if (sch) out.push(`    minIdleSchedule:\n      timeZone: ${sch.timeZone}\n      windows:\n${sch.windows.map((w) => `        - { days: ${w.days}, from: "${w.from}", to: "${w.to}", minIdle: ${w.minIdle} }`).join('\n')}\n`);
    out.push('\n');
  }
  return out.join('');
}
