/* Cancel, by an operator or a job source. */
import type { Queryable } from '../store/db.js';
import { recordEvents } from '../store/queries/events.js';
import { ConflictError, NotFoundError } from '../lib/errors.js';
import { FINAL_STATES, toJob, type Job } from './job.js';

/**
 * Cancels a job. Queued: cancelled at once. Claimed or running: marked, and the caller signals
 * the runner (returned as runnerId); the runner's result then records it as cancelled.
 */
export async function cancelJob(q: Queryable, now: number, jobId: number, actor: string): Promise<{ job: Job; signalRunner: string | null }> {
  const [row] = await q.query('select * from jobs where id = $1 for update', [jobId]);
  if (!row) throw new NotFoundError(`job ${jobId} not found`);
  if (FINAL_STATES.includes(row.state)) throw new ConflictError(`job ${jobId} is already ${row.state}`);
  if (row.state === 'queued') {
    const [done] = await q.query(
      `update jobs set state = 'cancelled', finished_at = $2, error = 'cancelled before it started', secrets_enc = null where id = $1 returning *`,
      [jobId, new Date(now)],
    );
    await recordEvents(q, now, [{ kind: 'job', subject: String(jobId), from: 'queued', to: 'cancelled', reason: 'cancelled by operator', actor }]);
    return { job: toJob(done), signalRunner: null };
  }
  const [marked] = await q.query('update jobs set cancel_requested = true where id = $1 returning *', [jobId]);
  await recordEvents(q, now, [{ kind: 'job', subject: String(jobId), from: row.state, to: row.state, reason: 'cancel requested', actor }]);
  return { job: toJob(marked), signalRunner: row.runner_id };
}
