/*
 * The live runners as a scheduler pass sees them, kept in memory between passes: each pass reads
 * only the runner rows written since the last one (a fleet of 10,000 idle runners costs a few
 * rows a pass, not 10,000), the active-job counts, which change without their runner's row, the
 * pools and the queue's depth, all in one statement.
 * Everything is read again now and then, and when the store's transaction counter wraps.
 */
import type { Queryable } from '../store/db.js';
import { schedulerRead, type SchedulerRead, type SchedulingRunner } from '../store/queries/scheduling.js';

/** How often everything is read again regardless (rows deleted by hand, anything missed). */
const FULL_READ_EVERY_MS = 60_000;

export class RunnerCache {
  private runners = new Map<string, SchedulingRunner>();
  private cursor: number | null = null;
  private fullAt = -Infinity;

  /** Forgets everything: the next read is a full one. */
  reset(): void {
    this.cursor = null;
  }

  /** The live runners now, each with its active jobs, and the pools and the queue's depth (read in the same statement). */
  async read(q: Queryable): Promise<{ runners: SchedulingRunner[]; pools: SchedulerRead['pools']; queued: SchedulerRead['queued'] }> {
    const full = this.cursor === null || performance.now() - this.fullAt >= FULL_READ_EVERY_MS;
    const read = await schedulerRead(q, full ? null : this.cursor);
    if (read.wrapped) {
      this.cursor = null;
      return this.read(q);
    }
    if (full) {
      this.runners.clear();
      this.fullAt = performance.now();
    }
    for (const r of read.runners) {
      if (r.state === 'terminated') this.runners.delete(r.id);
      else this.runners.set(r.id, r);
    }
    this.cursor = read.cursor;
    const runners = [...this.runners.values()];
    for (const r of runners) r.activeJobs = read.active.get(r.id) ?? 0;
    return { runners, pools: read.pools, queued: read.queued };
  }
}
