/*
 * A trace from a runyard store: the jobs table over a window (`--since 24h`) and the start
 * latency of its runners (launch to registration, the figure runyard_runner_cold_start_seconds
 * observes), which the simulator can replay as a fitted, empirical distribution.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDb, type Queryable } from '../store/db.js';
import { listPools } from '../store/queries/pools.js';
import { claimGaps, jobsCreatedBetween, runnerStartLatencies } from '../store/queries/trace.js';
import type { TraceJob } from './trace.js';
import type { Latency } from './provider-model.js';
import { SpecError } from './spec.js';

export interface StoreTrace {
  jobs: TraceJob[];
  /** finished jobs that never ran (cancelled while queued) */
  skipped: number;
  /** jobs not finished yet when read */
  unfinished: number;
  /** launch to first claim, per runner started in the window */
  startLatency: Latency | undefined;
  /** median ms from a result to the runner's next claim while jobs waited */
  claimGap: number | undefined;
  /** the pools as stored (parsed configs) */
  pools: Record<string, unknown>[];
  since: number;
  until: number;
}

/** Reads one window of a store. `q` is an open store (tests), or opened from url / dataDir. */
export async function readStoreTrace(q: Queryable, since: number, until: number): Promise<StoreTrace> {
  const rows = await jobsCreatedBetween(q, since, until);
  const jobs: TraceJob[] = [];
  let skipped = 0;
  let unfinished = 0;
  for (const r of rows) {
    if (!r.finished_at) {
      unfinished++;
      continue;
    }
    if (!r.started_at || !r.claimed_at) {
      skipped++;
      continue;
    }
    // duration is how long the job held its runner's slot (claim to result): what the replay needs
    const job: TraceJob = { arrival: r.created_at.getTime(), pool: r.pool, labels: r.labels ?? [], duration: Math.max(0, r.finished_at.getTime() - r.claimed_at.getTime()), outcome: r.state };
    // a retried job's claim is its last attempt's: only first attempts measure the queue wait
    if (r.attempt <= 1) job.wait = Math.max(0, r.claimed_at.getTime() - r.created_at.getTime());
    jobs.push(job);
  }
  // A runner can take work a little after it registers (control channel, setup, first claim).
  // Where a job was already waiting for it, launch to first claim is measured as it is; for the
  // others that offset is added to launch-to-registration, from the runners that show it.
  const starts = await runnerStartLatencies(q, since, until);
  const offsets = starts.filter((s) => s.ready !== null).map((s) => s.ready! - s.registered).sort((a, b) => a - b);
  const offset = offsets.length ? offsets[Math.floor(offsets.length / 2)]! : 0;
  // A runner's next claim after a result, where jobs were waiting: the agent's round trip.
  const gaps = await claimGaps(q, since, until);
  const gapSorted = gaps.map((g) => g.ms).sort((a, b) => a - b);
  const pools = (await listPools(q as never)).map((p) => p.config as unknown as Record<string, unknown>);
  return {
    jobs,
    skipped,
    unfinished,
    startLatency: starts.length ? { kind: 'empirical', samples: starts.map((s) => Math.round(s.ready ?? s.registered + offset)) } : undefined,
    claimGap: gapSorted.length ? Math.round(gapSorted[Math.floor(gapSorted.length / 2)]!) : undefined,
    pools,
    since,
    until,
  };
}

/** Opens the store `runyard up` uses (RUNYARD_DATABASE_URL, or PGlite in <dataDir>/data) and reads it. */
export async function readStoreAt(opts: { url?: string; dataDir: string }, since: number, until: number): Promise<StoreTrace> {
  if (!opts.url) {
    if (!existsSync(join(opts.dataDir, 'data'))) throw new SpecError(`no runyard store in ${opts.dataDir} (no data directory): give --data-dir, or RUNYARD_DATABASE_URL for PostgreSQL`);
    const pid = serverPid(opts.dataDir);
    // PGlite is one process's database: opening it beside a running server could corrupt it
    if (pid !== undefined) throw new SpecError(`runyard up (pid ${pid}) is using the embedded store in ${opts.dataDir}; stop it first, or use PostgreSQL (RUNYARD_DATABASE_URL), which can be read while it runs`);
  }
  const db = await openDb({ url: opts.url, dataDir: join(opts.dataDir, 'data') });
  try {
    return await readStoreTrace(db, since, until);
  } finally {
    await db.close();
  }
}

function serverPid(dataDir: string): number | undefined {
  try {
    const { pid } = JSON.parse(readFileSync(join(dataDir, 'server.json'), 'utf8'));
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}
