/*
 * Load generator: submits no-op jobs over the HTTP API, closed loop with a backlog cap (the
 * section tells it how many jobs have finished), so runners never starve and the queue does
 * not grow without bound. Modes: 'batch' (POST /api/v1/jobs/batch, `batch` jobs per request)
 * or 'single' (POST /api/v1/jobs, one per request). Also 'paced': one job per request at a
 * fixed rate, recording the client's send time of every job (latency section).
 */
import { HttpClient } from '../lib/http.js';
import { onParentMessage, toParent } from '../lib/child.js';
import { latencySummary } from '../lib/stats.js';

let completed = 0;

onParentMessage(async (m) => {
  if (m.type === 'completed') {
    completed = m.n;
    return;
  }
  if (m.type === 'closed') {
    const r = await closedLoop(m);
    toParent({ type: 'done', ...r });
  } else if (m.type === 'paced') {
    const r = await paced(m);
    toParent({ type: 'done', ...r });
  }
});
toParent({ type: 'ready' });

interface ClosedOpts {
  url: string;
  token: string;
  pool: string;
  mode: 'batch' | 'single';
  batch: number;
  concurrency: number;
  cap: number;
  durationMs: number;
  command: string;
  /** jobs already counted as completed before this run (the section's counter is cumulative) */
  base: number;
}

async function closedLoop(o: ClosedOpts) {
  const http = new HttpClient(o.url, o.token, o.concurrency);
  const end = Date.now() + o.durationMs;
  let submitted = 0;
  let errors = 0;
  let firstError = '';
  const lat: number[] = [];
  const perReq = o.mode === 'batch' ? o.batch : 1;
  const jobs = Array.from({ length: perReq }, () => ({ pool: o.pool, command: o.command }));
  const body = o.mode === 'batch' ? { jobs } : jobs[0];
  const path = o.mode === 'batch' ? '/api/v1/jobs/batch' : '/api/v1/jobs';
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      while (Date.now() < end) {
        if (submitted - (completed - o.base) + perReq > o.cap) {
          await new Promise((r) => setTimeout(r, 2));
          continue;
        }
        submitted += perReq;
        const t = performance.now();
        try {
          const r = await http.request('POST', path, body);
          if (r.status !== 201) {
            errors++;
            submitted -= perReq;
            firstError ||= `HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`;
          }
        } catch (err) {
          errors++;
          submitted -= perReq;
          firstError ||= (err as Error).message;
        }
        lat.push(performance.now() - t);
      }
    }),
  );
  http.close();
  return { submitted, errors, firstError, requestLatency: latencySummary(lat) };
}

interface PacedOpts {
  url: string;
  token: string;
  pool: string;
  count: number;
  ratePerS: number;
  command: string;
}

/** One job per request at a fixed rate; returns each job's id and the client's send time (epoch ms). */
async function paced(o: PacedOpts) {
  const http = new HttpClient(o.url, o.token, 16);
  const sent: { id: number; t: number; rtt: number }[] = [];
  const intervalMs = 1000 / o.ratePerS;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < o.count; i++) {
    const due = start + i * intervalMs;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      (async () => {
        // epoch time with sub-ms precision: performance.timeOrigin + now()
        const t = performance.timeOrigin + performance.now();
        const r = await http.request('POST', '/api/v1/jobs', { pool: o.pool, command: o.command });
        if (r.status !== 201) throw new Error(`submit failed: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
        sent.push({ id: r.body.job.id, t, rtt: performance.timeOrigin + performance.now() - t });
      })(),
    );
  }
  await Promise.all(pending);
  http.close();
  return { sent };
}
