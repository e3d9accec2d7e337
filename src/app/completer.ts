import type { Db } from '../store/db.js';
import type { Clock } from '../lib/clock.js';
import { completeJob, completeJobs, type Completion, type JobResult } from '../queue/report.js';
import type { Fence, Job } from '../queue/job.js';
import { refreshBusyIdle } from '../store/queries/runners.js';
import { StoreUnavailableError } from '../store/store-errors.js';

/** More than this many results waiting go in several statements. */
const MAX_BATCH = 256;

interface Pending {
  fence: Fence;
  result: JobResult;
  resolve: (job: Job) => void;
  reject: (err: unknown) => void;
}

/**
 * The job completer (after river's): runners' results are recorded in batches: one transaction (completeJobs, then the runners'
 * busy/idle) for every result that arrived while the previous batch was being written, so a
 * stream of results costs a few statements per batch rather than several each. A lone result
 * is written at once. Each caller gets its own job, or its own error (a lost claim: Conflict).
 */
export class JobCompleter {
  private pending: Pending[] = [];
  private draining: Promise<void> | undefined;
  private closed = false;

  constructor(private db: Db, private clock: Clock) {}

  start(): void {
    this.closed = false;
  }

  complete(fence: Fence, result: JobResult): Promise<Job> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('the server is shutting down'));
    return new Promise<Job>((resolve, reject) => {
      this.pending.push({ fence, result, resolve, reject });
      if (this.draining) return;
      // Results read in the same turn of the event loop share the first statement too.
      this.draining = new Promise<void>((done) => setImmediate(() => void this.drain().finally(done)));
    });
  }

  /** Takes no more results and waits until those already taken are written (before the Db closes). */
  async close(): Promise<void> {
    this.closed = true;
    await this.draining;
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, MAX_BATCH);
        const outcomes = await this.write(batch);
        outcomes.forEach((o, i) => ('job' in o ? batch[i]!.resolve(o.job) : batch[i]!.reject(o.error)));
      }
    } finally {
      this.draining = undefined;
    }
  }

  private async write(batch: Pending[]): Promise<(Completion | { error: unknown })[]> {
    const now = this.clock.now();
    try {
      return await this.db.transaction(async (tx) => {
        const outcomes = await completeJobs(tx, now, batch);
        await refreshBusyIdle(tx, now, batch.filter((_, i) => 'job' in outcomes[i]!).map((b) => b.fence.runnerId));
        return outcomes;
      });
    } catch {
      // A failed batch (a deadlock with recovery, a broken connection) must not fail results
      // that would succeed alone: each is written in its own transaction, as without batching.
      return Promise.all(
        batch.map(async (b) => {
          try {
            const job = await this.db.transaction(async (tx) => {
              const done = await completeJob(tx, now, b.fence, b.result);
              await refreshBusyIdle(tx, now, b.fence.runnerId);
              return done;
            });
            return { job };
          } catch (error) {
            return { error };
          }
        }),
      );
    }
  }
}
