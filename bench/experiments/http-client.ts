/*
 * Experiment (not part of `npm run bench`): client CPU per request of the agent's HTTP client
 * (fetch with AbortSignal.any + AbortSignal.timeout per call, as src/agent/runner-client.ts does)
 * versus node:http with a keep-alive agent, against a trivial JSON server in a child process.
 *   node --import tsx bench/experiments/http-client.ts
 */
import http from 'node:http';
import { fork } from 'node:child_process';
import { HttpClient } from '../lib/http.js';

if (process.argv[2] === 'server') {
  const s = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"state":"running","cancel":false}');
    });
  });
  s.keepAliveTimeout = 65_000;
  s.listen(0, '127.0.0.1', () => process.send!((s.address() as any).port));
} else {
  const child = fork(new URL(import.meta.url).pathname, ['server'], { execArgv: ['--import', 'tsx'] });
  const port: number = await new Promise((r) => child.once('message', (m) => r(m as number)));
  const base = `http://127.0.0.1:${port}`;
  const body = { attempt: 1 };
  const N = 5000;
  const C = 8;
  async function measure(name: string, call: () => Promise<unknown>) {
    for (let i = 0; i < 500; i++) await call();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let k = 0;
    await Promise.all(Array.from({ length: C }, async () => {
      while (k++ < N) await call();
    }));
    const cpu = process.cpuUsage(cpu0);
    const s = (performance.now() - t0) / 1000;
    console.log(`${name.padEnd(58)} ${Math.round(N / s)} req/s, client CPU ${(((cpu.user + cpu.system) / N)).toFixed(0)} µs/request`);
  }
  const viaFetch = async () => {
    const signal = AbortSignal.any([AbortSignal.timeout(30_000)]);
    const res = await fetch(base + '/api/v1/jobs/1/start', { method: 'POST', headers: { authorization: 'Bearer x', 'content-type': 'application/json' }, body: JSON.stringify(body), signal });
    return res.json();
  };
  const plainFetch = async () => {
    const res = await fetch(base + '/api/v1/jobs/1/start', { method: 'POST', headers: { authorization: 'Bearer x', 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return res.json();
  };
  const client = new HttpClient(base, 'x', C);
  const viaHttp = () => client.request('POST', '/api/v1/jobs/1/start', body);
  for (let round = 0; round < 2; round++) {
    await measure('fetch + AbortSignal.any([AbortSignal.timeout()]) (agent now)', viaFetch);
    await measure('fetch, no signals', plainFetch);
    await measure('node:http keep-alive agent', viaHttp);
  }
  client.close();
  child.kill();
  process.exit(0);
}
