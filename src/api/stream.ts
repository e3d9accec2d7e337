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
 * The bus ('jobs', 'runners') only makes a check immediate; otherwise one watcher per server,
 * shared by every open stream, reads new events once a second while a stream is open.
 */
import type { EventEmitter } from 'node:events';
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { AppContext } from '../app/context.js';
import { requireAdmin } from './auth.js';
import type { Env } from './http.js';

export interface FleetChange {
  jobs: number[];
  runners: string[];
  pools: string[];
}

const CHECK_EVERY_MS = 1000;
/** at most one check this often, however busy the bus is */
const MIN_GAP_MS = 200;
const PING_EVERY_MS = 15_000;
/** ids below the cursor re-read each check: a transaction may commit a lower id after a higher one */
const LOOKBACK_IDS = 500;
const MAX_ROWS = 2000;
const MAX_IDS_PER_EVENT = 500;

type Listener = (change: FleetChange) => void;

/** Reads new audit events and fans the changes out to the open streams. */
export class FleetWatcher {
  private listeners = new Set<Listener>();
  private cursor: number | undefined;
  private seen = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  private lastCheck = 0;
  private readonly poke = () => this.checkSoon();

  constructor(private ctx: Pick<AppContext, 'db' | 'log'> & { bus: EventEmitter }) {}

  /** Starts watching with the first subscriber; returns the unsubscribe function. */
  async subscribe(listener: Listener): Promise<() => void> {
    this.listeners.add(listener);
    const unsubscribe = () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
    try {
      this.starting ??= this.start().finally(() => (this.starting = undefined));
      await this.starting;
    } catch (err) {
      unsubscribe();
      throw err;
    }
    return unsubscribe;
  }

  get position(): number {
    return this.cursor ?? 0;
  }

  private async start() {
    if (this.timer) return;
    const [row] = await this.ctx.db.query<{ id: number | string | null }>('select max(id) as id from events');
    this.cursor = Number(row?.id ?? 0);
    await this.read(false); // what is already there is not news
    if (this.listeners.size === 0) return this.stop();
    this.timer = setInterval(() => this.checkSoon(), CHECK_EVERY_MS).unref();
    this.ctx.bus.on('work-queued', this.poke);
    this.ctx.bus.on('runners-changed', this.poke);
  }

  private stop() {
    if (this.timer) {
      this.ctx.bus.off('work-queued', this.poke);
      this.ctx.bus.off('runners-changed', this.poke);
    }
    clearInterval(this.timer);
    clearTimeout(this.soon);
    this.timer = this.soon = undefined;
    // The next subscriber starts from "now": nobody was listening in between.
    this.cursor = undefined;
    this.seen.clear();
  }

  private checkSoon() {
    if (this.soon || this.listeners.size === 0) return;
    const wait = Math.max(0, this.lastCheck + MIN_GAP_MS - Date.now());
    this.soon = setTimeout(() => {
      this.soon = undefined;
      void this.check();
    }, wait);
    this.soon.unref();
  }

  private async check(): Promise<void> {
    if (this.checking) return this.checking;
    this.lastCheck = Date.now();
    this.checking = this.read()
      .catch((err) => this.ctx.log.debug({ err }, 'fleet stream: reading events failed'))
      .finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async read(notify = true) {
    if (this.cursor === undefined) return;
    const from = Math.max(0, this.cursor - LOOKBACK_IDS);
    const rows = await this.ctx.db.query<{ id: number | string; kind: string; subject: string }>(
      `select id, kind, subject from events where id > $1 order by id limit $2`,
      [from, MAX_ROWS],
    );
    const change: FleetChange = { jobs: [], runners: [], pools: [] };
    const jobs = new Set<number>();
    const runners = new Set<string>();
    const pools = new Set<string>();
    for (const r of rows) {
      const id = Number(r.id);
      if (id > this.cursor) this.cursor = id;
      if (this.seen.has(id)) continue;
      this.seen.add(id);
      if (r.kind === 'job') jobs.add(Number(r.subject));
      else if (r.kind === 'runner') runners.add(r.subject);
      else if (r.kind === 'pool' || r.kind === 'scheduler') pools.add(r.subject);
    }
    for (const id of this.seen) if (id <= this.cursor - LOOKBACK_IDS) this.seen.delete(id);
    change.jobs = [...jobs];
    change.runners = [...runners];
    change.pools = [...pools];
    // More than one read's worth: keep going without waiting for the timer.
    if (rows.length === MAX_ROWS) this.checkSoon();
    if (!notify || (!change.jobs.length && !change.runners.length && !change.pools.length)) return;
    for (const l of this.listeners) l(change);
  }
}

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
