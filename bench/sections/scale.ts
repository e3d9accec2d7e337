/*
 * 10. Scale: one real server (PostgreSQL) with 10,000 simulated runners (registered over HTTP,
 * heartbeating at the default 30 s interval, every control channel open) and 100,000 queued
 * jobs. Measured while that load runs: every scheduler pass the server makes (gather, decide,
 * apply), claim latency of runners working through the queue, heartbeat latency, server RSS.
 */
import { performance } from 'node:perf_hooks';
import { LoadProcess } from '../lib/child.js';
import { startBenchServer } from '../lib/server.js';
import { fmt, fmtBytes, percentile } from '../lib/stats.js';
import { runSection, targetAtMost, type Row } from '../lib/section.js';

await runSection('scale', '10. Scale: 10,000 runners, 100,000 queued jobs', async ({ quick, log }) => {
  const runners = quick ? 1_000 : 10_000;
  const queued = quick ? 10_000 : 100_000;
  const workers = 200;
  const measureMs = quick ? 15_000 : 60_000;
  const heartbeatMs = 30_000;
  // maxRunners equal to the runners registered: the scheduler sees a full pool and starts no
  // process runners of its own (the queue would otherwise make it start thousands)
  const s = await startBenchServer({ store: 'postgres', tag: 'scale', config: { pools: [{ name: 'sim', maxRunners: runners }] } });
  const load = new LoadProcess('sim-runners.ts', {}, ['--max-old-space-size=4096']);
  // Every pass the scheduler runs, timed from its start to its plan applied, and its gather alone
  // (the store reads), so a slow pass shows whether it waited for the store.
  const sched = s.server.scheduler as any;
  let timing = false;
  const timed = (name: 'passNow' | 'gather') => {
    const fn = sched[name].bind(sched);
    const times: number[] = [];
    sched[name] = async (now: number) => {
      const t0 = performance.now();
      try {
        return await fn(now);
      } finally {
        if (timing) times.push(performance.now() - t0);
      }
    };
    return times;
  };
  const passes = timed('passNow');
  const gathers = timed('gather');
  let peakRss = 0;
  const mem = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 250);
  try {
    await load.next('ready');
    const reg = await load.request<any>({ type: 'register', url: s.url, adminToken: s.token, pool: 'sim', count: runners, concurrency: 16 }, 'registered', 1_800_000);
    log(`${reg.count} runners registered (${fmt(reg.registrationsPerS)}/s)`);
    if (reg.count !== runners) throw new Error(`${reg.count} of ${runners} runners registered: the scheduler would start real runners for the gap`);
    // 64 connections: a slow answer queues in the server, as it would for agents with a socket each
    await load.request({ type: 'keepalive', intervalMs: heartbeatMs, connections: 64 }, 'keepalive-started');
    const opened = await load.request<any>({ type: 'sse-open', count: runners, concurrency: 200, timeoutMs: 600_000 }, 'sse-opened', 1_800_000);
    log(`${opened.open} control channels open in ${fmt(opened.seconds)} s (${opened.failed} failed ${opened.firstError})`);
    const t0 = performance.now();
    for (let i = 0; i < queued; i += 1000) await s.http.ok('POST', '/api/v1/jobs/batch', { jobs: Array.from({ length: Math.min(1000, queued - i) }, (_, k) => ({ pool: 'sim', command: `echo ${i + k}` })) });
    log(`${queued} jobs queued in ${fmt((performance.now() - t0) / 1000)} s`);
    await load.request({ type: 'keepalive-stats' }, 'keepalive-stats'); // drop the figures from setting up
    timing = true;
    const rss0 = process.memoryUsage().rss;
    const work = load.request<any>({ type: 'work', runners: workers, slots: 1, jobs: queued, progressEvery: 5_000 }, 'work-done', measureMs + 120_000);
    // The tick runs a pass every 10 s; these wake it as often as the server allows (like a stream of jobs).
    const waker = setInterval(() => s.server.scheduler.wake(), 500);
    await new Promise((r) => setTimeout(r, measureMs));
    clearInterval(waker);
    load.send({ type: 'work-stop' });
    const w = await work;
    timing = false;
    const hb = await load.request<any>({ type: 'keepalive-stats' }, 'keepalive-stats');
    clearInterval(mem);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    const [left] = await s.server.db.query<{ n: number }>(`select count(*)::int as n from jobs where state = 'queued'`);
    const [live] = await s.server.db.query<{ n: number }>(`select count(*)::int as n from runners where state in ('idle', 'busy')`);
    const [started] = await s.server.db.query<{ n: number }>(`select count(*)::int as n from runners where provider <> 'manual'`);
    if (started!.n > 0) throw new Error(`the scheduler started ${started!.n} runners of its own: the load was not what it should be`);
    log(`${passes.length} passes; ${w.done} jobs done (${fmt(w.perS)}/s, ${w.errors} errors ${w.firstError}); ${hb.count} heartbeats, ${hb.errors} failed; ${left!.n} still queued; ${live!.n} runners online`);
    const passP99 = passes.length ? percentile(passes, 99) : null;
    const rows: Row[] = [
      { metric: 'runners registered, heartbeating, control channel open', value: Math.min(reg.count, opened.open), unit: 'runners', target: `>= ${runners}`, met: Math.min(reg.count, opened.open) >= runners && live!.n >= runners },
      { metric: 'jobs queued at the start', value: queued, unit: 'jobs' },
      { metric: `scheduler pass p50 (${passes.length} passes)`, value: passes.length ? +percentile(passes, 50).toFixed(1) : null, unit: 'ms' },
      { metric: 'scheduler pass p99', value: passP99 === null ? null : +passP99.toFixed(1), unit: 'ms', target: '<= 100', met: targetAtMost(passP99, 100), key: true },
      { metric: 'scheduler gather p50 (store reads of a pass)', value: gathers.length ? +percentile(gathers, 50).toFixed(1) : null, unit: 'ms' },
      { metric: 'scheduler gather p99', value: gathers.length ? +percentile(gathers, 99).toFixed(1) : null, unit: 'ms' },
      { metric: `claim latency p50 (${fmt(w.claimLatency.n)} claims by ${workers} runners)`, value: +w.claimLatency.p50.toFixed(1), unit: 'ms' },
      { metric: 'claim latency p99', value: +w.claimLatency.p99.toFixed(1), unit: 'ms', key: true },
      { metric: 'jobs completed while measuring', value: w.done, unit: 'jobs', note: `${fmt(w.perS)}/s` },
      { metric: `heartbeat p50 (${fmt(hb.count)} at ${fmt(runners / (heartbeatMs / 1000))}/s)`, value: +hb.latency.p50.toFixed(1), unit: 'ms' },
      { metric: 'heartbeat p99', value: +hb.latency.p99.toFixed(1), unit: 'ms', key: true },
      { metric: 'server RSS (peak)', value: Math.round(peakRss / 1024 / 1024), unit: 'MiB', target: '<= 1024', met: targetAtMost(peakRss / 1024 / 1024, 1024), key: true, note: `${fmtBytes(rss0)} when measuring began` },
    ];
    return {
      rows,
      notes: [
        `${fmt(runners)} simulated runners in a child process (one pool whose maxRunners is that number, so the scheduler starts none): registered over HTTP, every one heartbeating once per ${heartbeatMs / 1000} s (spread evenly) and holding its control channel open (one socket each).`,
        `${fmt(queued)} jobs queued through POST /api/v1/jobs/batch; then for ${measureMs / 1000} s ${workers} of the runners work through the queue (claim, start, log, result, no processes) while the scheduler is woken every 500 ms and ticks every 10 s.`,
        'Scheduler pass: every pass the server ran during the measurement, from gather (pools, the runner rows written since the last pass, active jobs by runner, queue depth) through decide() to the plan applied; gather is its store reads alone. Claim latency counts claims that returned jobs. RSS is the section process, which is the server.',
      ],
    };
  } finally {
    clearInterval(mem);
    await load.stop();
    await s.close();
  }
});
