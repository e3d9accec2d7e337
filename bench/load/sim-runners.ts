/*
 * Simulated runners in a child process: register many runners over HTTP with generated keys,
 * then drive them: heartbeats at a high rate, SSE control channels held open, or the whole job
 * protocol (claim -> start -> logs -> result) without spawning job processes.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { createParser } from 'eventsource-parser';
import { generateRunnerKeys } from '../../src/lib/sealed.js';
import { HttpClient } from '../lib/http.js';
import { onParentMessage, toParent } from '../lib/child.js';
import { latencySummary } from '../lib/stats.js';

interface Sim {
  id: string;
  credential: string;
}

let base = '';
let sims: Sim[] = [];
const streams: { req: http.ClientRequest; res?: http.IncomingMessage; last: Map<number, number> }[] = [];
let eventWaiters: (() => void)[] = [];
let stopWork = false;

onParentMessage(async (m) => {
  switch (m.type) {
    case 'register':
      toParent({ type: 'registered', ...(await register(m)) });
      break;
    case 'heartbeat':
      toParent({ type: 'heartbeat-done', ...(await heartbeats(m)) });
      break;
    case 'sse-open':
      toParent({ type: 'sse-opened', ...(await openStreams(m)) });
      break;
    case 'sse-await':
      toParent({ type: 'sse-received', ...(await awaitEvent(m)) });
      break;
    case 'sse-close':
      for (const s of streams) s.req.destroy();
      streams.length = 0;
      toParent({ type: 'sse-closed' });
      break;
    case 'work':
      stopWork = false;
      toParent({ type: 'work-done', ...(await work(m)) });
      break;
    case 'work-stop':
      stopWork = true;
      break;
    case 'keepalive':
      keepalive(m.intervalMs, m.connections);
      toParent({ type: 'keepalive-started' });
      break;
    case 'keepalive-stats':
      toParent({ type: 'keepalive-stats', count: keepaliveLat.length, errors: keepaliveErrors, latency: latencySummary(keepaliveLat.splice(0)) });
      keepaliveErrors = 0;
      break;
  }
});
toParent({ type: 'ready' });

/**
 * Heartbeats every registered runner once per `intervalMs`, spread evenly (as real agents do,
 * every 30 s by default), so runners stay online while they are used for other measurements.
 */
let keepaliveTimer: NodeJS.Timeout | undefined;
/** each keepalive heartbeat's latency (ms) and failures since the last keepalive-stats */
const keepaliveLat: number[] = [];
let keepaliveErrors = 0;
function keepalive(intervalMs: number, connections = 8) {
  clearInterval(keepaliveTimer);
  const client = new HttpClient(base, undefined, connections);
  let k = 0;
  const tickMs = 50;
  keepaliveTimer = setInterval(() => {
    const perTick = Math.ceil((sims.length * tickMs) / intervalMs);
    for (let i = 0; i < perTick && sims.length; i++) {
      const s = sims[k++ % sims.length]!;
      const t = performance.now();
      client
        .request('POST', `/api/v1/runners/${s.id}/heartbeat`, { version: 'bench', jobs: [] }, s.credential)
        .then((r) => (r.status === 200 ? keepaliveLat.push(performance.now() - t) : keepaliveErrors++))
        .catch(() => keepaliveErrors++);
    }
  }, tickMs);
  keepaliveTimer.unref();
}

async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

async function register(m: { url: string; adminToken: string; pool: string; count: number; concurrency: number }) {
  base = m.url;
  const admin = new HttpClient(m.url, m.adminToken, m.concurrency);
  const { secret } = await admin.ok('POST', '/api/v1/tokens', { pool: m.pool, description: 'bench simulated runners' });
  const t0 = performance.now();
  const keys = generateRunnerKeys(); // one key pair for all: the server only validates its form
  const made = await pool(m.count, m.concurrency, async (i) => {
    const id = randomUUID();
    const r = await admin.ok('POST', '/api/v1/runners/register', { id, name: `sim-${i}`, version: 'bench', publicKey: keys.publicKey, labels: [] }, secret);
    return { id, credential: r.credential as string };
  });
  sims = sims.concat(made);
  admin.close();
  return { count: sims.length, registrationsPerS: m.count / ((performance.now() - t0) / 1000) };
}

async function heartbeats(m: { durationMs: number; concurrency: number; url?: string }) {
  const client = new HttpClient(m.url ?? base, undefined, m.concurrency);
  const lat: number[] = [];
  let errors = 0;
  let firstError = '';
  let k = 0;
  const end = performance.now() + m.durationMs;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: m.concurrency }, async () => {
      while (performance.now() < end) {
        const s = sims[k++ % sims.length]!;
        const t = performance.now();
        try {
          const r = await client.request('POST', `/api/v1/runners/${s.id}/heartbeat`, { version: 'bench', jobs: [] }, s.credential);
          if (r.status !== 200) {
            errors++;
            firstError ||= `HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`;
          }
        } catch (err) {
          errors++;
          firstError ||= (err as Error).message;
        }
        lat.push(performance.now() - t);
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  client.close();
  return { count: lat.length, perS: lat.length / s, errors, firstError, latency: latencySummary(lat) };
}

/** Opens `count` control channels (one socket each); resolves when every one received `hello`. */
async function openStreams(m: { count: number; concurrency: number; timeoutMs: number }) {
  const u = new URL(base);
  const t0 = performance.now();
  let failed = 0;
  let firstError = '';
  await pool(Math.min(m.count, sims.length), m.concurrency, (i) => {
    const s = sims[i]!;
    return new Promise<void>((resolve) => {
      const entry: (typeof streams)[number] = { req: undefined as any, last: new Map() };
      let hello = false;
      const req = http.get({ host: u.hostname, port: Number(u.port), path: `/api/v1/runners/${s.id}/control`, agent: false, headers: { authorization: `Bearer ${s.credential}`, accept: 'text/event-stream' } }, (res) => {
        entry.res = res;
        if (res.statusCode !== 200) {
          failed++;
          firstError ||= `HTTP ${res.statusCode}`;
          res.resume();
          return resolve();
        }
        const parser = createParser({
          onEvent: (ev) => {
            if (ev.event === 'hello' && !hello) {
              hello = true;
              resolve();
            } else if (ev.event === 'job') {
              const seq = JSON.parse(ev.data).seq;
              if (typeof seq === 'number') {
                entry.last.set(seq, performance.timeOrigin + performance.now());
                for (const w of eventWaiters) w();
              }
            }
          },
        });
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => parser.feed(chunk));
        res.on('error', () => {});
      });
      req.on('error', (err) => {
        if (!hello) {
          failed++;
          firstError ||= err.message;
          resolve();
        }
      });
      entry.req = req;
      streams.push(entry);
    });
  });
  return { open: streams.length - failed, failed, firstError, seconds: (performance.now() - t0) / 1000 };
}

/** Waits until every open stream received the `job` event with this seq; returns arrival times. */
async function awaitEvent(m: { seq: number; timeoutMs: number }) {
  const deadline = performance.now() + m.timeoutMs;
  const live = streams.filter((s) => s.res?.statusCode === 200);
  const all = () => live.every((s) => s.last.has(m.seq));
  while (!all() && performance.now() < deadline) {
    await new Promise<void>((r) => {
      const t = setTimeout(r, 50);
      eventWaiters.push(() => {
        clearTimeout(t);
        r();
      });
    });
    eventWaiters = [];
  }
  const times = live.map((s) => s.last.get(m.seq)).filter((t): t is number => t !== undefined);
  times.sort((a, b) => a - b);
  return { received: times.length, of: live.length, first: times[0], p50: times[times.length >> 1], p99: times[Math.floor(times.length * 0.99)], last: times[times.length - 1] };
}

/**
 * The job protocol with no processes: each of `runners` simulated runners long-polls a claim
 * for up to `slots` jobs, then for each job posts start, one log batch and the result.
 */
async function work(m: { runners: number; slots: number; jobs: number; progressEvery: number }) {
  const client = new HttpClient(base, undefined, m.runners * (m.slots + 1));
  let done = 0;
  let errors = 0;
  let firstError = '';
  let nextProgress = m.progressEvery;
  const t0 = performance.now();
  const claims: number[] = [];
  const check = (r: { status: number; body: any }, what: string) => {
    if (r.status >= 300) {
      errors++;
      firstError ||= `${what}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`;
    }
  };
  await Promise.all(
    sims.slice(0, m.runners).map(async (s) => {
      while (!stopWork && done < m.jobs) {
        const tc = performance.now();
        const r = await client.request('POST', `/api/v1/runners/${s.id}/claim`, { max: m.slots, waitMs: 1000 }, s.credential);
        if (r.status === 200 && r.body.jobs?.length) claims.push(performance.now() - tc); // a claim that got work (not a long poll's wait)
        check(r, 'claim');
        if (r.status !== 200) {
          await new Promise((res) => setTimeout(res, 100));
          continue;
        }
        await Promise.all(
          (r.body.jobs as { id: number; attempt: number }[]).map(async (j) => {
            const a = { attempt: j.attempt };
            check(await client.request('POST', `/api/v1/jobs/${j.id}/start`, a, s.credential), 'start');
            const now = Date.now();
            check(await client.request('POST', `/api/v1/jobs/${j.id}/logs`, { ...a, seq: 1, lines: [{ t: now, s: 's', m: `runyard: job ${j.id}` }, { t: now, s: 's', m: 'runyard: exit code 0 after 1ms' }] }, s.credential), 'logs');
            check(await client.request('POST', `/api/v1/jobs/${j.id}/result`, { ...a, exitCode: 0, durationMs: 1 }, s.credential), 'result');
            done++;
            if (done >= nextProgress) {
              nextProgress += m.progressEvery;
              toParent({ type: 'work-progress', done });
            }
          }),
        );
      }
    }),
  );
  client.close();
  return { done, errors, firstError, perS: done / ((performance.now() - t0) / 1000), claimLatency: latencySummary(claims) };
}
