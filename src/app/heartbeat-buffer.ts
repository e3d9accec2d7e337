import type { Db } from '../store/db.js';
import { flushHeartbeats, heartbeatViews, type HeartbeatView } from '../store/queries/runners.js';
import type { Logger } from '../lib/logger.js';
import { BatchLoader } from '../lib/batch-loader.js';
import { StoreUnavailableError } from '../store/store-errors.js';
import { DedicatedConnection } from '../store/dedicated-connection.js';

/**
 * Heartbeats are coalesced both ways: what they answer from (the runner's state and the jobs the
 * server believes it holds) is read fresh for every heartbeat, but in one statement for all the
 * heartbeats that arrive while the previous read runs; what they record is kept in memory and
 * written in one statement per flush. Thousands of runners cost a few statements a second.
 */
export class HeartbeatBuffer {
  private pending = new Map<string, { id: string; at: number; version: string }>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private views: BatchLoader<string, HeartbeatView>;

  /** reads and flushes on a connection of their own: heartbeats never queue behind claims and results */
  private conn: DedicatedConnection;

  constructor(db: Db, private log: Logger, private intervalMs = 1000) {
    this.conn = new DedicatedConnection(db);
    this.views = new BatchLoader((ids) => heartbeatViews(this.conn, ids));
  }

  /** The runner's state and active jobs as stored now; undefined for an unknown runner. */
  view(id: string): Promise<HeartbeatView | undefined> {
    return this.views.get(id);
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  record(id: string, at: number, version: string): void {
    this.pending.set(id, { id, at, version });
  }

  get size(): number {
    return this.pending.size;
  }

  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const beats = [...this.pending.values()];
      this.pending.clear();
      try {
        await flushHeartbeats(this.conn, beats);
      } catch (err) {
        // keep the newest beat of each runner for the next flush
        for (const b of beats) if (!this.pending.has(b.id)) this.pending.set(b.id, b);
        this.log.warn(err instanceof StoreUnavailableError ? { reason: err.message, count: beats.length } : { err, count: beats.length }, 'heartbeat flush failed');
      }
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    this.conn.close();
  }
}
