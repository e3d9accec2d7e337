import type { Db } from '../store/db.js';
import { flushHeartbeats } from '../store/queries/runners.js';
import type { Logger } from '../lib/logger.js';

/**
 * Heartbeats are coalesced in memory and written in one statement per flush, so thousands of
 * runners cost one transaction a second rather than one each.
 */
export class HeartbeatBuffer {
  private pending = new Map<string, { id: string; at: number; version: string }>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(private db: Db, private log: Logger, private intervalMs = 1000) {}

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
        await flushHeartbeats(this.db, beats);
      } catch (err) {
        // keep the newest beat of each runner for the next flush
        for (const b of beats) if (!this.pending.has(b.id)) this.pending.set(b.id, b);
        this.log.warn({ err, count: beats.length }, 'heartbeat flush failed');
      }
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
