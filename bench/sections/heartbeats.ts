/*
 * 4. Heartbeats: simulated runners (registered over HTTP with generated keys) heartbeat as fast
 * as a load generator in a child process can send them, closed loop over keep-alive connections.
 */
import { performance } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { LoadProcess } from '../lib/child.js';
import { startBenchServer } from '../lib/server.js';
import { DbProbe } from '../lib/dbprobe.js';
import { CpuSampler, pgBackendPids } from '../lib/proc.js';
import { fmt, median } from '../lib/stats.js';
import { runSection, targetAtLeast, targetAtMost, type Row } from '../lib/section.js';

await runSection('heartbeats', '4. Heartbeats', async ({ quick, runs, log }) => {
  const runners = quick ? 200 : 1000;
  const durationMs = quick ? 4000 : 10_000;
  const concurrency = 64;
  const s = await startBenchServer({ store: 'postgres', tag: 'hb', config: { pools: [{ name: 'sim', maxRunners: 10 }] } });
  const load = new LoadProcess('sim-runners.ts');
  const rows: Row[] = [];
  const details = [];
  try {
    await load.next('ready');
    const reg = await load.request<any>({ type: 'register', url: s.url, adminToken: s.token, pool: 'sim', count: runners, concurrency: 16 }, 'registered');
    log(`${reg.count} runners registered (${fmt(reg.registrationsPerS)}/s)`);
    // Warm-up: fills the token cache and JIT.
    await load.request({ type: 'heartbeat', durationMs: 1500, concurrency }, 'heartbeat-done');
    const probe = new DbProbe(s.server.db);
    const results: any[] = [];
    let cpuLast: ReturnType<CpuSampler['stop']> | undefined;
    let elu = 0;
    for (let i = 0; i < runs; i++) {
      probe.reset();
      const sampler = new CpuSampler(() => ({ 'runyard server (this process)': [process.pid], 'load generator (child)': [load.child.pid!], 'PostgreSQL backends': pgBackendPids(s.dbName!) })).start();
      const e0 = performance.eventLoopUtilization();
      const r = await load.request<any>({ type: 'heartbeat', durationMs, concurrency }, 'heartbeat-done');
      elu = performance.eventLoopUtilization(e0).utilization;
      cpuLast = sampler.stop();
      results.push(r);
      log(`run ${i + 1}: ${fmt(r.perS)}/s p50 ${fmt(r.latency.p50)} ms p99 ${fmt(r.latency.p99)} ms, ${r.errors} errors ${r.firstError}`);
    }
    // The ceiling of this machine for this load: the same framework and load generator, a
    // handler that only parses the body and answers (no auth, validation, database or metrics).
    const bare = await bareServer();
    const refs: any[] = [];
    try {
      await load.request({ type: 'heartbeat', durationMs: 1500, concurrency, url: bare.url }, 'heartbeat-done');
      for (let i = 0; i < runs; i++) {
        const r = await load.request<any>({ type: 'heartbeat', durationMs, concurrency, url: bare.url }, 'heartbeat-done');
        refs.push(r);
        log(`reference run ${i + 1}: ${fmt(r.perS)}/s p50 ${fmt(r.latency.p50)} ms p99 ${fmt(r.latency.p99)} ms`);
      }
    } finally {
      await bare.close();
    }
    const rate = median(results.map((r) => r.perS));
    const p50 = median(results.map((r) => r.latency.p50));
    const p99 = median(results.map((r) => r.latency.p99));
    rows.push({ metric: `heartbeats accepted per second (${runners} runners, ${concurrency} connections)`, value: rate, unit: '/s', target: '>= 10000', met: targetAtLeast(rate, 10_000), runs: results.map((r) => Math.round(r.perS)) });
    rows.push({ metric: 'heartbeat latency p50', value: p50, unit: 'ms', runs: results.map((r) => +r.latency.p50.toFixed(2)) });
    rows.push({ metric: 'heartbeat latency p99', value: p99, unit: 'ms', target: '<= 20', met: targetAtMost(p99, 20), runs: results.map((r) => +r.latency.p99.toFixed(2)) });
    rows.push({ metric: 'server event-loop utilisation (last run)', value: elu * 100, unit: '%' });
    const refRate = median(refs.map((r) => r.perS));
    rows.push({ metric: 'reference: a bare Hono server on this machine, same load (answers without auth, validation or database)', value: refRate, unit: '/s', runs: refs.map((r) => Math.round(r.perS)), note: `p99 ${fmt(median(refs.map((r) => r.latency.p99)))} ms` });
    rows.push({ metric: 'runyard / bare server', value: rate / refRate, unit: '×' });
    const total = results[results.length - 1]!.count;
    details.push({ title: 'Where the CPU went (last run)', headers: ['process', '% of one core', 'CPU µs per heartbeat'], rows: Object.entries(cpuLast!.groups).map(([g, v]) => [g, +v.pctOfCore.toFixed(0), +((v.cpuS * 1e6) / total).toFixed(0)]).concat([['whole machine busy (2 cores = 200%)', +(cpuLast!.machineBusyPct * 2).toFixed(0), '']]) });
    details.push({ title: `Database statements per heartbeat (last run; ${fmt(probe.roundTripsPerJob(total))} round trips each)`, ...probe.table(total, 8) });
    details[1]!.headers = ['statement', 'calls per heartbeat', 'ms per call', 'ms per heartbeat'];
    return {
      rows,
      notes: [
        `${runners} runners registered over HTTP (POST /api/v1/runners/register with a registration token and an X25519 public key), then a load generator in a child process sends POST /api/v1/runners/{id}/heartbeat ({version, jobs: []}, each runner's own credential) round-robin over the runners, ${concurrency} requests in flight on keep-alive connections, ${durationMs / 1000} s per run, ${runs} runs after a 1.5 s warm-up; figures are medians of runs.`,
        'The load generator shares the 2 cores with the server and PostgreSQL: its CPU is shown below. The reference row runs the same load generator against a Hono server in this process whose heartbeat route only parses the body and answers: the most this machine serves with this framework and client.',
      ],
      details,
    };
  } finally {
    await load.stop();
    await s.close();
  }
});

async function bareServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const app = new Hono();
  app.post('/api/v1/runners/:id/heartbeat', async (c) => {
    JSON.parse(await c.req.text());
    return c.json({ state: 'idle', cancel: [], lost: [] });
  });
  const server = await new Promise<ReturnType<typeof serve>>((ok) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => ok(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((ok) => {
      server.close(() => ok());
      (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
    }),
  };
}
