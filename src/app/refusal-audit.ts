/*
 * The audit trail of refused calls (401, 403, bad webhook signatures), aggregated so junk cannot
 * flood it: the first refusal of a (kind, source address, actor, reason) in a window is written
 * at once as one row; repeats in that window are counted in memory, and the row's data (count,
 * first and last time, a sample of the paths tried) is brought up to date every few seconds and
 * when the window ends. 2,000 junk requests from one client in a minute are one row with count
 * 2000, not 2,000 rows; another client, token or reason is a row of its own, so every distinct
 * refusal stays traceable. Each server aggregates its own refusals.
 */
import type { Queryable } from '../store/db.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { insertEvent, updateEventData } from '../store/queries/events.js';

export interface Refusal {
  /** 'auth' for the API's 401/403 and the webhook's bad signatures */
  kind: 'auth' | 'github';
  /** the client's address */
  source: string;
  method: string;
  /** the path as sent (still percent-encoded) */
  path: string;
  reason: string;
  actor: string;
  /** what tells this request apart (a webhook's delivery id), kept in a sample beside the paths */
  detail?: string;
}

interface Window {
  id: Promise<number | undefined>;
  data: { source: string; count: number; firstAt: string; lastAt: string; paths: string[]; details?: string[] };
  written: number;
  endsAt: number;
}

export interface RefusalAuditOptions {
  windowMs: number;
  flushMs: number;
  /** distinct paths kept per row */
  samplePaths: number;
  /** open windows at most; past it the oldest are closed early */
  maxWindows: number;
}

const DEFAULTS: RefusalAuditOptions = { windowMs: 60_000, flushMs: 5_000, samplePaths: 10, maxWindows: 10_000 };

export class RefusalAudit {
  private windows = new Map<string, Window>();
  private timer: NodeJS.Timeout | undefined;
  private readonly opts: RefusalAuditOptions;

  constructor(private db: Queryable, private clock: Clock, private log: Logger, opts: Partial<RefusalAuditOptions> = {}) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  /** Records one refusal; resolves once a new row is written (a repeat only counts). Never throws. */
  async record(r: Refusal): Promise<void> {
    const now = this.clock.now();
    const key = JSON.stringify([r.kind, r.source, r.actor, r.reason]);
    const subject = `${r.method} ${r.path}`.slice(0, 200);
    let w = this.windows.get(key);
    if (w && now >= w.endsAt) {
      this.windows.delete(key);
      void this.write(w);
      w = undefined;
    }
    if (w) {
      w.data.count++;
      w.data.lastAt = new Date(now).toISOString();
      sample(w.data.paths, subject, this.opts.samplePaths);
      if (r.detail) sample((w.data.details ??= []), r.detail, this.opts.samplePaths);
      this.arm();
      return;
    }
    if (this.windows.size >= this.opts.maxWindows) this.closeOldest();
    const at = new Date(now).toISOString();
    const data: Window['data'] = { source: r.source, count: 1, firstAt: at, lastAt: at, paths: [subject], ...(r.detail ? { details: [r.detail] } : {}) };
    const id = insertEvent(this.db, now, { kind: r.kind, subject, reason: r.reason.slice(0, 500), actor: r.actor, data }).catch((err) => {
      this.log.warn({ err }, 'could not record a refused call');
      return undefined;
    });
    this.windows.set(key, { id, data, written: 1, endsAt: now + this.opts.windowMs });
    await id;
  }

  /** Writes the counts of every window that changed, and forgets the windows that ended. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const now = this.clock.now();
    const writes: Promise<void>[] = [];
    for (const [key, w] of this.windows) {
      if (now >= w.endsAt) this.windows.delete(key);
      writes.push(this.write(w));
    }
    await Promise.all(writes);
  }

  close(): Promise<void> {
    return this.flush();
  }

  private async write(w: Window): Promise<void> {
    if (w.written === w.data.count) return;
    const count = w.data.count;
    const id = await w.id;
    if (id === undefined) return;
    await updateEventData(this.db, id, structuredClone(w.data))
      .then(() => (w.written = Math.max(w.written, count)))
      .catch((err) => this.log.warn({ err }, 'could not update a refused-call count'));
  }

  private arm(): void {
    this.timer ??= setTimeout(() => void this.flush(), this.opts.flushMs);
    this.timer.unref?.();
  }

  private closeOldest(): void {
    const [key, w] = this.windows.entries().next().value as [string, Window];
    this.windows.delete(key);
    void this.write(w);
  }
}

function sample(list: string[], value: string, max: number): void {
  if (list.length < max && !list.includes(value)) list.push(value.slice(0, 200));
}
