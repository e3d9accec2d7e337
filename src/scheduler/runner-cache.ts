/*
 * The live runners as a scheduler pass sees them, kept in memory between passes: each pass reads
 * only the runner rows written since the last one (a fleet of 10,000 idle runners costs a few
 * rows a pass, not 10,000) and the active-job counts, which change without their runner's row.
 * Everything is read again now and then, and when the store's transaction counter wraps.
 */
import type { Queryable } from '../store/db.js';
import { activeJobsByRunner, schedulingRunnerRows, type SchedulingRunner } from '../store/queries/scheduling.js';

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

  /** The live runners now, each with its active jobs. */
  async read(q: Queryable): Promise<SchedulingRunner[]> {
    const full = this.cursor === null || performance.now() - this.fullAt >= FULL_READ_EVERY_MS;
    const rows = await schedulingRunnerRows(q, full ? null : this.cursor);
    const active = await activeJobsByRunner(q);
    if (rows.wrapped) {
      this.cursor = null;
      return this.read(q);
    }
    if (full) {
      this.runners.clear();
      this.fullAt = performance.now();
    }
    for (const r of rows.runners) {
      if (r.state === 'terminated') this.runners.delete(r.id);
      else this.runners.set(r.id, r);
    }
    this.cursor = rows.cursor;
    const out = [...this.runners.values()];
    for (const r of out) r.activeJobs = active.get(r.id) ?? 0;
    return out;
  }
}
