/*
 * 5. Control channels: many concurrent SSE runner connections held by one server, memory per
 * connection, and the time to fan one event out to all of them. The clients (simulated runners,
 * one socket each) live in a child process.
 */
import { LoadProcess } from '../lib/child.js';
import { startBenchServer } from '../lib/server.js';
import { fmt, fmtBytes, median } from '../lib/stats.js';
import { runSection, type Row } from '../lib/section.js';

/** Profiles this process (the server) over one fan-out only, with the in-process inspector. */
async function startProfile() {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  return {
    stop: async (dir: string) => {
      const { profile } = (await session.post('Profiler.stop')) as any;
      const { mkdirSync, writeFileSync } = await import('node:fs');
      mkdirSync(dir, { recursive: true });
      writeFileSync(`${dir}/fanout-${process.pid}.cpuprofile`, JSON.stringify(profile));
      session.disconnect();
    },
  };
}

const gc = (globalThis as any).gc as (() => void) | undefined;
async function settle(): Promise<{ rss: number; heap: number; external: number }> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 200));
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, external: m.external + m.arrayBuffers };
}

await runSection('sse', '5. Control channels (SSE)', async ({ quick, runs, log }) => {
  const n = Number(process.env.BENCH_SSE_CONNECTIONS ?? (quick ? 2000 : 15_000));
  const s = await startBenchServer({ store: 'postgres', tag: 'sse', config: { pools: [{ name: 'sim', maxRunners: 10 }] } });
  const load = new LoadProcess('sim-runners.ts', {}, ['--max-old-space-size=4096']);
  const rows: Row[] = [];
  try {
    await load.next('ready');
    const reg = await load.request<any>({ type: 'register', url: s.url, adminToken: s.token, pool: 'sim', count: n, concurrency: 16 }, 'registered', 900_000);
    log(`${reg.count} runners registered (${fmt(reg.registrationsPerS)}/s)`);
    const before = await settle();
    const opened = await load.request<any>({ type: 'sse-open', count: n, concurrency: 200, timeoutMs: 300_000 }, 'sse-opened', 900_000);
    log(`${opened.open} channels open in ${fmt(opened.seconds)} s (${opened.failed} failed ${opened.firstError})`);
    await new Promise((r) => setTimeout(r, 1000));
    const after = await settle();
    const held = s.server.hub.connectionCount();
    rows.push({ metric: 'concurrent control channels held', value: held, unit: 'connections', target: `>= ${n}`, met: held >= n });
    rows.push({ metric: 'time to open them (200 connecting at once)', value: opened.seconds, unit: 's' });
    rows.push({ key: true, metric: 'server RSS per connection', value: (after.rss - before.rss) / held, unit: 'bytes', note: `RSS ${fmtBytes(before.rss)} → ${fmtBytes(after.rss)}` });
    rows.push({ key: true, metric: 'server JS heap per connection', value: (after.heap - before.heap) / held, unit: 'bytes', note: `heap ${fmtBytes(before.heap)} → ${fmtBytes(after.heap)}` });
    const fan: { all: number; p50: number; received: number }[] = [];
    const fanRuns = Math.max(runs, 5);
    for (let i = 0; i < fanRuns; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const waiting = load.request<any>({ type: 'sse-await', seq: i + 1, timeoutMs: 60_000 }, 'sse-received', 120_000);
      await new Promise((r) => setTimeout(r, 100)); // the child is listening
      const profiling = i === 1 && process.env.BENCH_PROFILE_DIR ? await startProfile() : undefined;
      const t0 = performance.timeOrigin + performance.now();
      s.server.hub.broadcast('job', { pool: 'sim', seq: i + 1 });
      const r = await waiting;
      if (profiling) await profiling.stop(`${process.env.BENCH_PROFILE_DIR}/fanout`);
      fan.push({ all: r.last - t0, p50: r.p50 - t0, received: r.received });
      log(`fan-out ${i + 1}: ${r.received}/${r.of} received, p50 ${fmt(r.p50 - t0)} ms, all ${fmt(r.last - t0)} ms`);
    }
    const all = median(fan.map((f) => f.all));
    rows.push({ key: true, metric: `fan-out of one event to all ${fmt(held)}: last one received`, value: all, unit: 'ms', runs: fan.map((f) => Math.round(f.all)) });
    rows.push({ metric: 'fan-out: half received', value: median(fan.map((f) => f.p50)), unit: 'ms', runs: fan.map((f) => Math.round(f.p50)) });
    rows.push({ metric: 'events delivered in every fan-out', value: Math.min(...fan.map((f) => f.received)), unit: `of ${held}`, met: fan.every((f) => f.received >= held), target: 'all' });
    await load.request({ type: 'sse-close' }, 'sse-closed');
    return {
      rows,
      notes: [
        `${fmt(n)} runners registered over HTTP, then a child process opens GET /api/v1/runners/{id}/control for each (one socket each, 200 connecting at a time) and counts a channel open when its \`hello\` event arrives. Server and client each hold ${fmt(n)} sockets, under the 20,000 file limit of each process.`,
        'Memory: RSS and JS heap of the server process after forced GC (node --expose-gc), before and after opening the channels, divided by the connections held.',
        `Fan-out: the server process calls hub.broadcast('job', …) (what the server does to signal runners); the client records when each connection receives it; times are from the call to the last (and the median) receipt, same machine clock. ${fanRuns} fan-outs, medians.`,
      ],
    };
  } finally {
    await load.stop();
    await s.close();
  }
});
