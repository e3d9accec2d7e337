/*
 * 1. Queue core throughput, in-process: no-op jobs enqueued in batches of 100 and claimed and
 * completed in batches of up to 100, on PostgreSQL and on PGlite; and graphile-worker on the same
 * PostgreSQL with a comparable configuration (same batch sizes, same pool size, same concurrency).
 *
 * Per run and engine, a fresh database:
 *   enqueue phase: N jobs, batches of 100, 4 producers at once           -> jobs/s
 *   process phase: the N queued jobs claimed and completed until none is left -> jobs/s
 *   overall: N / (enqueue time + process time)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { openPglite, openPostgres, type Db } from '../../src/store/db.js';
import { migrate } from '../../src/store/migrate.js';
import { claimJobs } from '../../src/queue/claim.js';
import { completeJob, completeJobs } from '../../src/queue/report.js';
import { enqueue } from '../../src/queue/submit.js';
import type { JobSpec } from '../../src/queue/job.js';
import { createBenchDatabase, queryUrl } from '../lib/pg.js';
import { median, fmt } from '../lib/stats.js';
import { runSection, targetAtLeast, type Row } from '../lib/section.js';

const BATCH = 100;
const PRODUCERS = 4;
const POOL_SIZE = 10;
const CONCURRENCY = Number(process.env.BENCH_QUEUE_CONCURRENCY ?? 4);
const GW_CONCURRENCY = Number(process.env.BENCH_GW_CONCURRENCY ?? CONCURRENCY);

interface Phase {
  enqueueS: number;
  processS: number;
  n: number;
}
const rates = (p: Phase) => ({ enqueue: p.n / p.enqueueS, process: p.n / p.processS, overall: p.n / (p.enqueueS + p.processS) });

async function producers(n: number, addBatch: (size: number) => Promise<void>): Promise<void> {
  let left = n;
  await Promise.all(
    Array.from({ length: PRODUCERS }, async () => {
      while (left > 0) {
        const size = Math.min(BATCH, left);
        left -= size;
        await addBatch(size);
      }
    }),
  );
}

const spec: JobSpec = { pool: 'bench', commands: ['true'], timeoutMs: 3_600_000 };

/**
 * runyard: enqueue(); then CONCURRENCY workers, each claims up to 100 and completes them with
 * completeJobs() (one statement per batch). `oneByOne`: completeJob() per job in one transaction,
 * as before completeJobs() existed (the "before" row).
 */
async function runyardRun(db: Db, n: number, oneByOne = false): Promise<Phase> {
  const specs = (k: number) => Array.from({ length: k }, () => spec);
  const t0 = performance.now();
  await producers(n, async (k) => {
    await enqueue(db, Date.now(), specs(k));
  });
  const t1 = performance.now();
  let done = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      const runnerId = randomUUID();
      for (;;) {
        const jobs = await claimJobs(db, Date.now(), runnerId, 'bench', BATCH);
        if (jobs.length === 0) return;
        await db.transaction(async (tx) => {
          const now = Date.now();
          if (oneByOne) {
            for (const j of jobs) await completeJob(tx, now, { jobId: j.id, runnerId, attempt: j.attempt }, { exitCode: 0 });
            return;
          }
          const out = await completeJobs(tx, now, jobs.map((j) => ({ fence: { jobId: j.id, runnerId, attempt: j.attempt }, result: { exitCode: 0 } })));
          const refused = out.filter((o) => !('job' in o)).length;
          if (refused) throw new Error(`${refused} results refused`);
        });
        done += jobs.length;
      }
    }),
  );
  const t2 = performance.now();
  if (done !== n) throw new Error(`runyard processed ${done} of ${n} jobs`);
  return { n, enqueueS: (t1 - t0) / 1000, processS: (t2 - t1) / 1000 };
}

async function runyardPostgres(n: number, oneByOne = false): Promise<Phase> {
  const d = await createBenchDatabase('queue');
  const db = await openPostgres(d.url, { max: POOL_SIZE });
  try {
    await migrate(db);
    return await runyardRun(db, n, oneByOne);
  } finally {
    await db.close();
    await d.drop();
  }
}

async function runyardPglite(n: number): Promise<Phase> {
  const dir = mkdtempSync(join(tmpdir(), 'runyard-bench-pglite-'));
  const db = await openPglite(join(dir, 'data'));
  try {
    await migrate(db);
    return await runyardRun(db, n);
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * graphile-worker 0.17: addJobs() in batches of 100; run() with the same concurrency, a local
 * queue of 100 (jobs fetched and locked 100 at a time) and completions batched
 * (completeJobBatchDelay 0: every completion of one tick in one statement).
 */
async function graphileRun(n: number): Promise<Phase> {
  const gw = await import('graphile-worker');
  const d = await createBenchDatabase('gw');
  const logger = new gw.Logger(() => () => {});
  // Our own pool (same size), so its lifetime is ours: ended before the database is dropped.
  const pgPool = new pg.Pool({ connectionString: d.url, max: POOL_SIZE });
  pgPool.on('error', () => {});
  pgPool.on('connect', (client) => client.on('error', () => {}));
  const preset = { worker: { concurrentJobs: GW_CONCURRENCY, pollInterval: 2000, localQueue: { size: BATCH }, completeJobBatchDelay: 0, logger } };
  try {
    await gw.runMigrations({ pgPool, logger });
    const utils = await gw.makeWorkerUtils({ pgPool, logger });
    const t0 = performance.now();
    await producers(n, async (k) => {
      await utils.addJobs(Array.from({ length: k }, () => ({ identifier: 'noop', payload: {} })));
    });
    const t1 = performance.now();
    await utils.release();
    const events = new EventEmitter();
    let completed = 0;
    let allSeen!: () => void;
    const seen = new Promise<void>((r) => (allSeen = r));
    events.on('job:complete', () => {
      if (++completed === n) allSeen();
    });
    const runner = await gw.run({
      pgPool,
      concurrency: GW_CONCURRENCY,
      noHandleSignals: true,
      pollInterval: 2000,
      logger,
      events: events as any,
      taskList: { noop: async () => {} },
      preset: preset as any,
    });
    await seen;
    // Completions are batched: wait until the last batch is committed (the table is empty).
    for (;;) {
      const [r] = await queryUrl(d.url, 'select count(*)::int as n from graphile_worker._private_jobs');
      if (r.n === 0) break;
      await new Promise((res) => setTimeout(res, 2));
    }
    const t2 = performance.now();
    await runner.stop();
    return { n, enqueueS: (t1 - t0) / 1000, processS: (t2 - t1) / 1000 };
  } finally {
    await pgPool.end().catch(() => {});
    await d.drop();
  }
}

await runSection('queue', '1. Queue core throughput (in-process)', async ({ quick, runs, log }) => {
  const n = Number(process.env.BENCH_QUEUE_JOBS ?? (quick ? 5_000 : 20_000));
  const pg: Phase[] = [];
  const gw: Phase[] = [];
  const lite: Phase[] = [];
  const before: Phase[] = [];
  // Interleaved, so slow moments of the machine hit the engines alike.
  for (let i = 0; i < runs; i++) {
    const a = await runyardPostgres(n);
    pg.push(a);
    log(`run ${i + 1}: runyard/PostgreSQL enqueue ${fmt(rates(a).enqueue)}/s process ${fmt(rates(a).process)}/s`);
    const b = await graphileRun(n);
    gw.push(b);
    log(`run ${i + 1}: graphile-worker   enqueue ${fmt(rates(b).enqueue)}/s process ${fmt(rates(b).process)}/s`);
    const c = await runyardPostgres(n, true);
    before.push(c);
    log(`run ${i + 1}: runyard, one completeJob() per job (before) process ${fmt(rates(c).process)}/s`);
  }
  const nLite = Number(process.env.BENCH_QUEUE_JOBS_PGLITE ?? (quick ? 2_000 : 10_000));
  for (let i = 0; i < runs; i++) {
    const c = await runyardPglite(nLite);
    lite.push(c);
    log(`run ${i + 1}: runyard/PGlite     enqueue ${fmt(rates(c).enqueue)}/s process ${fmt(rates(c).process)}/s`);
  }
  const m = (ps: Phase[], k: 'enqueue' | 'process' | 'overall') => median(ps.map((p) => rates(p)[k]));
  const runsOf = (ps: Phase[], k: 'enqueue' | 'process' | 'overall') => ps.map((p) => Math.round(rates(p)[k]));
  const ratio = (k: 'enqueue' | 'process' | 'overall') => median(pg.map((p, i) => rates(p)[k] / rates(gw[i]!)[k]));
  const ratioRuns = (k: 'enqueue' | 'process' | 'overall') => pg.map((p, i) => Number((rates(p)[k] / rates(gw[i]!)[k]).toFixed(2)));
  const rows: Row[] = [];
  for (const k of ['enqueue', 'process', 'overall'] as const) {
    rows.push({ metric: `runyard on PostgreSQL, ${k}`, value: m(pg, k), unit: 'jobs/s', runs: runsOf(pg, k) });
    rows.push({ metric: `graphile-worker on PostgreSQL, ${k}`, value: m(gw, k), unit: 'jobs/s', runs: runsOf(gw, k) });
    const r = ratio(k);
    rows.push({ metric: `ratio runyard / graphile-worker, ${k}`, value: r, unit: '×', target: '>= 1.0', met: targetAtLeast(r, 1.0), runs: ratioRuns(k) });
  }
  for (const k of ['enqueue', 'process', 'overall'] as const) rows.push({ metric: `runyard on PGlite (file-backed), ${k}`, value: m(lite, k), unit: 'jobs/s', runs: runsOf(lite, k) });
  for (const k of ['process', 'overall'] as const)
    rows.push({ metric: `before: runyard completing one job per completeJob() call, ${k}`, value: m(before, k), unit: 'jobs/s', runs: runsOf(before, k) });
  return {
    rows,
    notes: [
      `${fmt(n)} no-op jobs per run on PostgreSQL (${fmt(nLite)} on PGlite), ${runs} runs, a fresh database per run and engine; figures are medians, ratios are medians of per-run ratios (runs interleaved).`,
      `Enqueue: batches of ${BATCH}, ${PRODUCERS} producers at once. runyard: enqueue() from src/queue/submit.ts (one INSERT … SELECT from jsonb_to_recordset per batch, plus its audit events). graphile-worker ${gwVersion()}: addJobs().`,
      `Process: runyard: ${CONCURRENCY} workers, each claimJobs(max ${BATCH}) (one UPDATE … FOR UPDATE SKIP LOCKED statement) then completeJobs() for the claimed batch (one UPDATE … FROM jsonb_to_recordset statement, fenced per job, with its audit events) in a transaction. graphile-worker: run() with concurrency ${GW_CONCURRENCY}, localQueue.size ${BATCH}, completeJobBatchDelay 0 (batched completions), task is a no-op; timed until its jobs table is empty.`,
      `Both use a pg pool of ${POOL_SIZE} connections to the same PostgreSQL. PGlite: a file-backed data dir (what \`runyard up\` uses), one connection by design.`,
      'Before rows: the same runyard run, but each claimed job completed by its own completeJob() call (three statements per job), as the queue did before completeJobs().',
    ],
  };
});

function gwVersion(): string {
  try {
    return JSON.parse(readFileSync(new URL('../../node_modules/graphile-worker/package.json', import.meta.url), 'utf8')).version;
  } catch {
    return '0.17';
  }
}
