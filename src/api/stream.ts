/*
 * GET /api/v1/stream — fleet change notifications as server-sent events, for the dashboard
 * (which reads them with fetch, so the admin token travels in the Authorization header).
 *
 *   ready    {cursor}                    once, when the stream is open
 *   jobs     {ids: number[]}             jobs whose state changed (submitted, claimed, …, retried)
 *   runners  {ids: string[]}             runners that started, registered, changed state or left
 *   pools    {names: string[]}           pool config changes and scheduler notes about a pool
 *   ping     {}                          every 15 s, so proxies keep the connection open
 *
 * Notifications are derived from the audit trail: every job, runner and pool transition is
 * recorded in `events` by whichever control plane made it, so a dashboard also sees changes
 * made by the other servers of an HA pair and by the scheduler, which does not use the bus.
 * The bus (work-queued, runners-changed) only makes a check immediate; otherwise one watcher per
 * server (src/app/fleet-watcher.ts), shared by every open stream, reads new events once a second
 * while a stream is open.
 */
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { AppContext } from '../app/context.js';
import { FleetWatcher } from '../app/fleet-watcher.js';
import { requireAdmin } from './auth.js';
import type { Env } from './http.js';

const PING_EVERY_MS = 15_000;
const MAX_IDS_PER_EVENT = 500;

export function streamRouter(ctx: AppContext) {
  const app = new Hono<Env>();
  const watcher = new FleetWatcher(ctx);

  app.get('/', async (c) => {
    requireAdmin(c.var.principal);
    return streamSSE(c, async (stream) => {
      const abort = new AbortController();
      stream.onAbort(() => abort.abort());
      // Writes are chained so events keep their order however fast changes arrive.
      let writing: Promise<unknown> = Promise.resolve();
      const send = (event: string, data: unknown) => {
        writing = writing.then(() => (abort.signal.aborted ? undefined : stream.writeSSE({ event, data: JSON.stringify(data) }))).catch(() => abort.abort());
      };
      const unsubscribe = await watcher.subscribe((change) => {
        if (change.jobs.length) send('jobs', { ids: change.jobs.slice(0, MAX_IDS_PER_EVENT), truncated: change.jobs.length > MAX_IDS_PER_EVENT });
        if (change.runners.length) send('runners', { ids: change.runners.slice(0, MAX_IDS_PER_EVENT), truncated: change.runners.length > MAX_IDS_PER_EVENT });
        if (change.pools.length) send('pools', { names: change.pools });
      });
      const ping = setInterval(() => send('ping', {}), PING_EVERY_MS);
      try {
        send('ready', { cursor: watcher.position });
        await new Promise<void>((resolve) => (abort.signal.aborted ? resolve() : abort.signal.addEventListener('abort', () => resolve(), { once: true })));
      } finally {
        clearInterval(ping);
        unsubscribe();
      }
    });
  });

  return app;
}
