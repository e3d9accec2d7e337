/*
 * Experiment (not part of `npm run bench`): the cost of an SSE control channel written the way
 * src/api/runner-protocol.ts does (Hono streamSSE: a web TransformStream per connection, a
 * wake-up promise loop and a ping interval) versus plain writes to Node's ServerResponse.
 * Memory per connection and the time to fan one event out to all, N connections, same client.
 *   node --expose-gc --import tsx bench/experiments/sse-raw.ts [connections]
 */
import http from 'node:http';
import { fork } from 'node:child_process';
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { serve } from '@hono/node-server';

const N = Number(process.argv[2] ?? 5000);

if (process.argv[2] === 'client') {
  // client: open N connections to port, report when all got `hello`, then each `job` seq.
  const port = Number(process.argv[3]);
  const n = Number(process.argv[4]);
  const got = new Map<number, number>();
  let hello = 0;
  const waiting: { seq: number; times: number[] }[] = [];
  let open = 0;
  const connect = (i: number) =>
    new Promise<void>((resolve) => {
      http.get({ host: '127.0.0.1', port, path: `/sse/${i}`, agent: false }, (res) => {
        res.setEncoding('utf8');
        let buf = '';
        res.on('data', (c: string) => {
          buf += c;
          let k;
          while ((k = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, k);
            buf = buf.slice(k + 2);
            if (ev.includes('event: hello')) {
              hello++;
              resolve();
            } else if (ev.includes('event: job')) {
              const seq = Number(/"seq":(\d+)/.exec(ev)![1]);
              got.set(seq, (got.get(seq) ?? 0) + 1);
              const w = waiting.find((x) => x.seq === seq);
              w?.times.push(performance.timeOrigin + performance.now());
              if (w && w.times.length === n) process.send!({ type: 'received', seq, last: w.times[w.times.length - 1], p50: w.times[n >> 1] });
            }
          }
        });
      }).on('error', () => resolve());
    });
  process.on('message', async (m: any) => {
    if (m.type === 'open') {
      let next = 0;
      await Promise.all(Array.from({ length: 200 }, async () => {
        while (next < n) await connect(next++);
      }));
      open = hello;
      process.send!({ type: 'opened', open });
    } else if (m.type === 'expect') {
      waiting.push({ seq: m.seq, times: [] });
      process.send!({ type: 'expecting' });
    }
  });
} else {
  const gc = (globalThis as any).gc as () => void;
  const heap = async () => {
    for (let i = 0; i < 3; i++) {
      gc?.();
      await new Promise((r) => setTimeout(r, 100));
    }
    return process.memoryUsage().heapUsed;
  };
  for (const mode of ['hono streamSSE (as now)', 'plain ServerResponse writes']) {
    const senders = new Set<(e: string, d: unknown) => void>();
    let server: http.Server;
    if (mode.startsWith('hono')) {
      const app = new Hono();
      app.get('/sse/:i', (c) =>
        streamSSE(c, async (stream) => {
          const queue: { event: string; data: string }[] = [];
          let wake: (() => void) | undefined;
          const push = (event: string, data: unknown) => {
            queue.push({ event, data: JSON.stringify(data) });
            wake?.();
          };
          senders.add(push);
          let open = true;
          stream.onAbort(() => {
            open = false;
            wake?.();
          });
          push('hello', { state: 'idle' });
          const ping = setInterval(() => push('ping', { at: Date.now() }), 10_000);
          try {
            while (open) {
              while (queue.length) {
                const e = queue.shift()!;
                await stream.writeSSE({ event: e.event, data: e.data });
              }
              if (!open) break;
              await new Promise<void>((r) => (wake = r));
              wake = undefined;
            }
          } finally {
            clearInterval(ping);
            senders.delete(push);
          }
        }),
      );
      server = await new Promise<http.Server>((ok) => {
        const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => ok(s as http.Server)) as http.Server;
      });
    } else {
      server = http.createServer((req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        const push = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
        senders.add(push);
        push('hello', { state: 'idle' });
        const ping = setInterval(() => push('ping', { at: Date.now() }), 10_000);
        req.on('close', () => {
          clearInterval(ping);
          senders.delete(push);
        });
      });
      await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    }
    const port = (server.address() as any).port;
    const client = fork(new URL(import.meta.url).pathname, ['client', String(port), String(N)], { execArgv: ['--import', 'tsx'] });
    const next = (type: string) => new Promise<any>((r) => {
      const f = (m: any) => {
        if (m.type === type) {
          client.off('message', f);
          r(m);
        }
      };
      client.on('message', f);
    });
    const h0 = await heap();
    client.send({ type: 'open' });
    const { open } = await next('opened');
    await new Promise((r) => setTimeout(r, 500));
    const h1 = await heap();
    const fan: number[] = [];
    const cpu: number[] = [];
    for (let seq = 1; seq <= 4; seq++) {
      client.send({ type: 'expect', seq });
      await next('expecting');
      const c0 = process.cpuUsage();
      const t0 = performance.timeOrigin + performance.now();
      for (const s of senders) s('job', { seq });
      const r = await next('received');
      const c = process.cpuUsage(c0);
      fan.push(r.last - t0);
      cpu.push((c.user + c.system) / 1000);
      await new Promise((res) => setTimeout(res, 300));
    }
    fan.sort((a, b) => a - b);
    cpu.sort((a, b) => a - b);
    console.log(`${mode.padEnd(28)} ${open} connections: JS heap ${((h1 - h0) / open / 1024).toFixed(1)} KiB per connection; fan-out to all ${fan[2]!.toFixed(0)} ms (median of 4), server CPU for it ${cpu[2]!.toFixed(0)} ms`);
    client.kill();
    server.closeAllConnections?.();
    server.close();
    await new Promise((r) => setTimeout(r, 1000));
  }
  process.exit(0);
}
