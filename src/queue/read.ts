/* Reading jobs and their logs. */
import type { Queryable } from '../store/db.js';
import { NotFoundError } from '../lib/errors.js';
import { toJob, type Job, type JobState, type LogLine } from './job.js';

export async function getJob(q: Queryable, id: number): Promise<Job> {
  const [row] = await q.query('select * from jobs where id = $1', [id]);
  if (!row) throw new NotFoundError(`job ${id} not found`);
  return toJob(row);
}

export interface JobFilter {
  state?: JobState[];
  pool?: string;
  runnerId?: string;
  /** return jobs with id < before (paging, newest first) */
  before?: number;
  limit: number;
}

export async function listJobs(q: Queryable, f: JobFilter): Promise<Job[]> {
  const rows = await q.query(
    `select * from jobs
     where ($1::text[] is null or state = any($1::text[])) and ($2::text is null or pool = $2)
       and ($3::uuid is null or runner_id = $3) and ($4::bigint is null or id < $4)
     order by id desc limit $5`,
    [f.state ?? null, f.pool ?? null, f.runnerId ?? null, f.before ?? null, f.limit],
  );
  return rows.map(toJob);
}

export async function readLogs(q: Queryable, jobId: number, afterSeq: number, limit = 500): Promise<{ seq: number; lines: LogLine[] }[]> {
  return q.query('select seq, lines from job_logs where job_id = $1 and seq > $2 order by seq limit $3', [jobId, afterSeq, limit]);
}

/** The job submitted with this idempotency key, if any. */
export async function findJobByIdempotencyKey(q: Queryable, key: string): Promise<Job | undefined> {
  const [row] = await q.query('select * from jobs where idempotency_key = $1', [key]);
  return row ? toJob(row) : undefined;
}

/** How many jobs wait in a pool's queue. */
export async function countQueued(q: Queryable, pool: string): Promise<number> {
  const [row] = await q.query<{ n: number }>(`select count(*)::int as n from jobs where pool = $1 and state = 'queued'`, [pool]);
  return row!.n;
}
