/*
 * 2. End-to-end throughput through the HTTP API with real agent processes and no-op jobs.
 *
 * A server in this process (fresh PostgreSQL database, or a file-backed PGlite store), a pool
 * of 4 warm runners with 8 slots each (real `runyard agent` processes started by the scheduler
 * through the process provider), and a load generator in a child process that submits `true`
 * jobs, closed loop: it keeps at most `cap` jobs submitted but not finished, so the runners
 * never starve and the queue does not grow without bound. Throughput is finished jobs per
 * second as counted by the server (runyard_job_outcomes_total), after a warm-up.
 */
import { performance } from 'node:perf_hooks';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { LoadProcess } from '../lib/child.js';
import { DbProbe } from '../lib/dbprobe.js';
import { finishedCount, sleep, waitFor } from '../lib/fleet.js';
import { startFleet, cpuGroups, closeFleet } from '../lib/fleetbench.js';
import { CpuSampler } from '../lib/proc.js';
import { tupleStats } from '../lib/pg.js';
import { fmt, mean, median } from '../lib/stats.js';
import { runSection, targetAtLeast, type Row, type SectionResult } from '../lib/section.js';
import type { BenchServer } from '../lib/server.js';

/** Counts scheduler passes (wrapping the instance's method from outside) and runner starts. */
function passCounter(s: BenchServer) {
  const sched = s.server.scheduler as any;
  const orig = sched.pass.bind(sched);
  const c = { passes: 0 };
  sched.pass = (now: number) => {
    c.passes++;
    return orig(now);
  };
  return c;
}
const runnersCreated = async (s: BenchServer) => (await s.server.db.query<{ n: number }>('select count(*)::int as n from runners'))[0]!.n;

interface RunResult {
  throughput: number;
  series: number[];
  submitted: number;
  errors: number;
  firstError: string;
  finished: number;
  elu: number;
  cpu: ReturnType<CpuSampler['stop']>;
  requestP50: number;
  requestP99: number;
  passesPerJob: number;
  runnersStarted: number;
}

async function oneRun(s: BenchServer, load: LoadProcess, o: { mode: 'batch' | 'single'; durationMs: number; warmupMs: number; cap: number; concurrency: number; probe?: DbProbe; passes: { passes: number } }): Promise<RunResult> {
  const base = (await finishedCount(s)).total;
  const passes0 = o.passes.passes;
  const runners0 = await runnersCreated(s);
  let finished = base;
  const feeder = setInterval(async () => {
    finished = (await finishedCount(s)).total;
    load.send({ type: 'completed', n: finished });
  }, 20);
  const series: number[] = [];
  let last = base;
  const ticker = setInterval(() => {
    series.push(finished - last);
    last = finished;
  }, 1000);
  const sampler = new CpuSampler(cpuGroups(s, { 'load generator (child)': () => [load.child.pid!] })).start();
  const elu0 = performance.eventLoopUtilization();
  o.probe?.reset();
  const t0 = Date.now();
  const done = await load.request<any>(
    { type: 'closed', url: s.url, token: s.token, pool: 'bench', mode: o.mode, batch: 100, concurrency: o.concurrency, cap: o.cap, durationMs: o.durationMs, command: 'true', base },
    'done',
    o.durationMs + 120_000,
  );
  const wall = Date.now() - t0;
  o.probe?.pause();
  const passesPerJob = (o.passes.passes - passes0) / Math.max(1, finished - base);
  const runnersStarted = (await runnersCreated(s)) - runners0;
  const elu = performance.eventLoopUtilization(elu0).utilization;
  const cpu = sampler.stop();
  clearInterval(ticker);
  clearInterval(feeder);
  const warm = Math.round(o.warmupMs / 1000);
  const steady = series.slice(warm);
  const throughput = steady.length ? mean(steady) : (finished - base) / (wall / 1000);
  // Let the backlog drain before the next run (bounded).
  await waitFor('backlog to drain', async () => (await finishedCount(s)).total >= base + done.submitted, 120_000, 100).catch(() => {});
  return { throughput, series, submitted: done.submitted, errors: done.errors, firstError: done.firstError, finished: finished - base, elu, cpu, requestP50: done.requestLatency.p50, requestP99: done.requestLatency.p99, passesPerJob, runnersStarted };
}

function cpuTable(r: RunResult, title: string) {
  const rows: (string | number)[][] = [];
  for (const [g, v] of Object.entries(r.cpu.groups)) {
    rows.push([g, +v.pctOfCore.toFixed(0), +((v.cpuS * 1000) / Math.max(1, r.finished)).toFixed(3)]);
    if (g.startsWith('agents') && v.childrenCpuS > 0) rows.push(['job processes (/bin/sh, reaped by agents)', +((v.childrenCpuS / r.cpu.wallS) * 100).toFixed(0), +((v.childrenCpuS * 1000) / Math.max(1, r.finished)).toFixed(3)]);
  }
  rows.push(['whole machine busy (2 cores = 200%)', +((r.cpu.machineBusyPct * 2)).toFixed(0), '']);
  return { title: `${title} (scheduler passes per finished job: ${fmt(r.passesPerJob)}; runners started during the run: ${r.runnersStarted})`, headers: ['process', '% of one core', 'CPU ms per job'], rows };
}

function spawnCeiling(): Promise<{ perS: number; spawnBlockMs: number }> {
  return new Promise((ok, fail) => {
    const c = spawn(process.execPath, ['--import', 'tsx', resolve(import.meta.dirname, '../load/spawn-ceiling.ts'), 'main', '4', '8', '4000'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } });
    let out = '';
    c.stdout!.on('data', (d) => (out += d));
    c.once('exit', (code) => (code === 0 ? ok(JSON.parse(out.trim().split('\n').pop()!)) : fail(new Error(`spawn-ceiling exited ${code}`))));
  });
}

await runSection('e2e', '2. End-to-end throughput (HTTP API, real agents)', async ({ quick, runs, log }) => {
  const rows: Row[] = [];
  const notes: string[] = [];
  const details: NonNullable<SectionResult['details']> = [];

  const parts = (process.env.BENCH_E2E_PARTS ?? 'a,b,c,ceiling').split(',');
  // Reference: the machine's ceiling for starting a process per job, with nothing of runyard.
  if (parts.includes('ceiling')) {
    const xs: { perS: number; spawnBlockMs: number }[] = [];
    for (let i = 0; i < runs; i++) xs.push(await spawnCeiling());
    const v = median(xs.map((x) => x.perS));
    rows.push({ key: true, metric: 'reference: bare `/bin/sh -c true` processes started and reaped per second (4 Node processes × 8 at a time, no runyard)', value: v, unit: 'processes/s', runs: xs.map((x) => Math.round(x.perS)), note: `spawn() blocks the calling event loop ${fmt(median(xs.map((x) => x.spawnBlockMs)))} ms per process` });
    log(`spawn ceiling ${fmt(v)}/s`);
  }

  // 2a. Batched submit, sustained.
  if (parts.includes('a')) {
    const durationMs = Number(process.env.BENCH_E2E_SUSTAINED_MS ?? (quick ? 15_000 : 120_000));
    const s = await startFleet({ store: 'postgres', tag: 'e2e' });
    const probe = new DbProbe(s.server.db);
    const passes = passCounter(s);
    const load = new LoadProcess('submit.ts');
    try {
      await load.next('ready');
      log(`batched submit, sustained ${durationMs / 1000}s`);
      const r = await oneRun(s, load, { mode: 'batch', durationMs, warmupMs: 5000, cap: Number(process.env.BENCH_E2E_CAP ?? 2000), concurrency: 4, probe, passes });
      const windowS = quick ? 5 : 30;
      const steady = r.series.slice(5, Math.floor(durationMs / 1000));
      const first = mean(steady.slice(0, windowS));
      const lastW = mean(steady.slice(-windowS));
      const decay = lastW / first;
      const tenS: number[] = [];
      for (let i = 0; i + 10 <= steady.length; i += 10) tenS.push(mean(steady.slice(i, i + 10)));
      log(`sustained: ${fmt(r.throughput)} jobs/s, first ${windowS}s ${fmt(first)}, last ${windowS}s ${fmt(lastW)}`);
      rows.push({ metric: `batched submit (100/request), sustained ${durationMs / 1000}s`, value: r.throughput, unit: 'jobs/s', target: '>= 5000', met: targetAtLeast(r.throughput, 5000), note: `10-s windows: ${tenS.map((x) => fmt(x)).join(', ')}` });
      rows.push({ metric: `decay: last ${windowS}s / first ${windowS}s`, value: decay, unit: '×', target: '>= 0.9 (no decay)', met: targetAtLeast(decay, 0.9) });
      const tup = s.dbUrl ? await tupleStats(s.dbUrl, 'jobs') : undefined;
      if (tup) rows.push({ key: true, metric: 'dead tuples on jobs at the end', value: tup.dead, unit: 'tuples', note: `${fmt(tup.live)} live, ${tup.autovacuums} autovacuum runs, ${fmt(tup.updates)} updates of which ${fmt(tup.hotUpdates)} HOT, table+indexes ${fmt(tup.sizeBytes / 1024 / 1024)} MiB` });
      rows.push({ metric: 'server event-loop utilisation during the run', value: r.elu * 100, unit: '%' });
      const statesRow = (await finishedCount(s)).byState;
      notes.push(`Sustained run: ${fmt(r.submitted)} jobs submitted, ${fmt(r.finished)} finished during the run; outcomes ${JSON.stringify(statesRow)}; ${r.errors} submit errors${r.firstError ? ` (first: ${r.firstError})` : ''}; batch request latency p50 ${fmt(r.requestP50)} ms, p99 ${fmt(r.requestP99)} ms.`);
      details.push(cpuTable(r, 'Where the CPU went, batched sustained run'));
      const t = probe.table(Math.max(1, r.finished));
      details.push({ title: `Database statements per finished job, batched sustained run (${fmt(probe.roundTripsPerJob(Math.max(1, r.finished)))} round trips per job incl. BEGIN/COMMIT; time as seen by the server, including waiting for a pooled connection)`, ...t });
    } finally {
      await load.stop();
      await closeFleet(s);
    }
  }

  // 2b. One job per request.
  if (parts.includes('b')) {
    const durationMs = Number(process.env.BENCH_E2E_RUN_MS ?? (quick ? 8_000 : 20_000));
    const s = await startFleet({ store: 'postgres', tag: 'e2e1' });
    const passes = passCounter(s);
    const load = new LoadProcess('submit.ts');
    try {
      await load.next('ready');
      const results: RunResult[] = [];
      for (let i = 0; i < runs; i++) {
        const r = await oneRun(s, load, { mode: 'single', durationMs, warmupMs: 3000, cap: Number(process.env.BENCH_E2E_CAP ?? 1000), concurrency: 32, passes });
        results.push(r);
        log(`one job per request, run ${i + 1}: ${fmt(r.throughput)} jobs/s`);
      }
      const v = median(results.map((r) => r.throughput));
      rows.push({ metric: `one job per request (32 in flight), ${durationMs / 1000}s runs`, value: v, unit: 'jobs/s', target: '>= 1500', met: targetAtLeast(v, 1500), runs: results.map((r) => Math.round(r.throughput)) });
      const mid = results[results.length >> 1]!;
      notes.push(`One job per request: submit request latency p50 ${fmt(mid.requestP50)} ms, p99 ${fmt(mid.requestP99)} ms; ${results.reduce((a, r) => a + r.errors, 0)} errors.`);
      details.push(cpuTable(mid, 'Where the CPU went, one job per request'));
    } finally {
      await load.stop();
      await closeFleet(s);
    }
  }

  // 2c. PGlite.
  if (parts.includes('c')) {
    const durationMs = Number(process.env.BENCH_E2E_RUN_MS ?? (quick ? 8_000 : 20_000));
    const s = await startFleet({ store: 'pglite', tag: 'e2el' });
    const probe = new DbProbe(s.server.db);
    probe.pause();
    const passes = passCounter(s);
    const load = new LoadProcess('submit.ts');
    try {
      await load.next('ready');
      const results: RunResult[] = [];
      for (let i = 0; i < runs; i++) {
        const r = await oneRun(s, load, { mode: 'batch', durationMs, warmupMs: 3000, cap: Number(process.env.BENCH_E2E_CAP ?? 1000), concurrency: 2, probe: i === 0 ? probe : undefined, passes });
        results.push(r);
        log(`PGlite, run ${i + 1}: ${fmt(r.throughput)} jobs/s`);
      }
      const v = median(results.map((r) => r.throughput));
      rows.push({ metric: `on PGlite (file-backed), batched submit, ${durationMs / 1000}s runs`, value: v, unit: 'jobs/s', target: '>= 500', met: targetAtLeast(v, 500), runs: results.map((r) => Math.round(r.throughput)) });
      const first = results[0]!;
      details.push(cpuTable(results[results.length >> 1]!, 'Where the CPU went, PGlite (the store runs inside the server process)'));
      details.push({ title: `Database statements per finished job on PGlite, run 1 (${fmt(probe.roundTripsPerJob(Math.max(1, first.finished)))} round trips per job)`, ...probe.table(Math.max(1, first.finished), 10) });
    } finally {
      await load.stop();
      await closeFleet(s);
    }
  }

  notes.unshift(
    'Pool: 4 warm runners (minIdle 4, maxRunners 4), 8 jobs per runner: real `runyard agent` processes started by the scheduler through the process provider. Job: `true` (each job is still a /bin/sh process, a work dir, a log batch and a result).',
    'Load generator in a child process, closed loop: it keeps at most 2,000 (batched) / 1,000 (single, PGlite) jobs submitted but not finished, so runners never starve and the queue stays bounded. Throughput: jobs finished per second, counted by the server, after 5 s (3 s) of warm-up.',
  );
  return { rows, notes, details };
});
