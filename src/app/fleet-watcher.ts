/**
 * Fleet changes for the dashboard's stream, derived from the audit trail (see src/api/stream.ts):
 * one watcher per server, shared by every open stream, reads new events while a stream is open.
 */
import type { AppContext } from './context.js';
import { eventSubjectsAfter, lastEventId } from '../store/queries/events.js';

const CHECK_EVERY_MS = 1000;
/** at most one check this often, however busy the bus is */
const MIN_GAP_MS = 200;
/** ids below the cursor re-read each check: a transaction may commit a lower id after a higher one */
const LOOKBACK_IDS = 500;
const MAX_ROWS = 2000;

export interface FleetChange {
  jobs: number[];
  runners: string[];
  pools: string[];
}

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

  constructor(private ctx: Pick<AppContext, 'db' | 'log' | 'bus'>) {}

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
    this.cursor = await lastEventId(this.ctx.db);
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
    const rows = await eventSubjectsAfter(this.ctx.db, from, MAX_ROWS);
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

