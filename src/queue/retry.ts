/* Retry: an operator puts a finished job back in the queue. */
import type { Queryable } from '../store/db.js';
import { recordEvents } from '../store/queries/events.js';
import { ConflictError, NotFoundError } from '../lib/errors.js';
import { toJob, type Job } from './job.js';

/** Puts a finished job back in the queue as a new attempt budget (operator "retry"). */
export async function retryJob(q: Queryable, now: number, jobId: number, actor: string): Promise<Job> {
  const [row] = await q.query('select state, secret_names from jobs where id = $1 for update', [jobId]);
  if (!row) throw new NotFoundError(`job ${jobId} not found`);
  // Secrets are discarded when a job finishes; a retry would silently run without them.
  if ((row.secret_names ?? []).length > 0)
    throw new ConflictError(`job ${jobId} had secrets (${row.secret_names.join(', ')}), which are discarded when a job finishes; submit it again with its secrets`);
  if (!['failed', 'cancelled', 'timed_out'].includes(row.state)) throw new ConflictError(`job ${jobId} is ${row.state}; only failed, cancelled or timed-out jobs can be retried`);
  const [upd] = await q.query(
    `update jobs set state = 'queued', runner_id = null, cancel_requested = false, exit_code = null, output = null, error = null,
       finished_at = null, started_at = null, claimed_at = null, queued_at = $2, max_attempts = attempt + greatest(max_attempts - attempt, 1)
     where id = $1 returning *`,
    [jobId, new Date(now)],
  );
  await recordEvents(q, now, [{ kind: 'job', subject: String(jobId), from: row.state, to: 'queued', reason: 'retried by operator', actor }]);
  return toJob(upd);
}
