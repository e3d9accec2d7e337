/*
 * What the server itself tells jobs that are still waiting in the queue: progress lines in their
 * logs (a runner image being built for them) and a failure that ends the wait (the build failed),
 * so a job never waits on something that will not come.
 */
import type { Queryable } from '../store/db.js';
import type { LogLine } from './job.js';

/** Queued jobs of one pool and image (null: the pool's own image), oldest first. */
export async function queuedJobIds(q: Queryable, pool: string, image: string | null, limit = 100): Promise<number[]> {
  const rows = await q.query<{ id: number }>(
    `select id from jobs where state = 'queued' and pool = $1 and ($2::text is null and image is null or image = $2) order by id limit $3`,
    [pool, image, limit],
  );
  return rows.map((r) => r.id);
}

/**
 * Appends runner messages to the logs of jobs that are still queued. Each gets the next seq; a
 * claim later stores the runner's own batches after them (the claim sets log_base to log_seq).
 * Returns the jobs written to.
 */
export async function appendQueuedLogs(q: Queryable, now: number, jobIds: number[], messages: string[]): Promise<number[]> {
  if (jobIds.length === 0 || messages.length === 0) return [];
  const lines: LogLine[] = messages.map((m) => ({ t: now, s: 's', m }));
  const rows = await q.query<{ id: number }>(
    `with j as (
       update jobs set log_seq = log_seq + 1 where id = any($1::bigint[]) and state = 'queued' returning id, log_seq
     )
     insert into job_logs (job_id, seq, at, lines) select id, log_seq, $2, $3::jsonb from j returning job_id as id`,
    [jobIds, new Date(now), JSON.stringify(lines)],
  );
  return rows.map((r) => r.id);
}

/** Fails every queued job of one pool and image with `reason`; returns their ids. */
export async function failQueuedJobs(q: Queryable, now: number, pool: string, image: string | null, reason: string, actor: string): Promise<number[]> {
  const rows = await q.query<{ id: number }>(
    `with upd as (
       update jobs set state = 'failed', error = $4, finished_at = $3, secrets_enc = null
       where state = 'queued' and pool = $1 and ($2::text is null and image is null or image = $2)
       returning id
     ), ev as (
       insert into events (at, kind, subject, from_state, to_state, reason, actor)
       select $3, 'job', id::text, 'queued', 'failed', $4, $5 from upd
     )
     select id from upd order by id`,
    [pool, image, new Date(now), reason, actor],
  );
  return rows.map((r) => r.id);
}
