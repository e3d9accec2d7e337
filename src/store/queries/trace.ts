/*
 * What `runyard simulate --from-store` reads of a store's history (src/sim/store-trace.ts): one
 * window of jobs, the start latency of the runners launched in it, the agents' claim gaps.
 */
import type { Queryable } from '../db.js';

export interface TraceJobRow {
  pool: string;
  labels: string[];
  state: string;
  attempt: number;
  created_at: Date;
  claimed_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
}

/** Jobs created in [since, until), oldest first. */
export async function jobsCreatedBetween(q: Queryable, since: number, until: number): Promise<TraceJobRow[]> {
  return q.query<TraceJobRow>(
    `select pool, labels, state, attempt, created_at, claimed_at, started_at, finished_at from jobs
     where created_at >= $1 and created_at < $2 order by created_at, id`,
    [new Date(since), new Date(until)],
  );
}

/**
 * Runners launched in [since, until) that registered: ms from launch to registration, and to
 * the first claim of a job that was already waiting for them (null when none was).
 */
export async function runnerStartLatencies(q: Queryable, since: number, until: number): Promise<{ registered: number; ready: number | null }[]> {
  return q.query(
    `select (extract(epoch from r.registered_at - r.created_at) * 1000)::float8 as registered,
            (select (extract(epoch from min(j.claimed_at) - r.created_at) * 1000)::float8 from jobs j
              where j.runner_id = r.id and j.attempt = 1 and j.created_at <= r.registered_at
                and not exists (select 1 from jobs e where e.runner_id = r.id and e.claimed_at < j.claimed_at)) as ready
     from runners r
     where r.registered_at is not null and r.created_at >= $1 and r.created_at < $2 and r.provider <> 'manual' order by r.created_at, r.id`,
    [new Date(since), new Date(until)],
  );
}

/** ms from a runner's result to its next claim, for first attempts of jobs that were waiting then. */
export async function claimGaps(q: Queryable, since: number, until: number): Promise<{ ms: number }[]> {
  return q.query(
    `select (extract(epoch from j.claimed_at - prev.finished_at) * 1000)::float8 as ms
     from jobs j join lateral (select p.finished_at from jobs p where p.runner_id = j.runner_id and p.finished_at <= j.claimed_at order by p.finished_at desc limit 1) prev on true
     where j.created_at >= $1 and j.created_at < $2 and j.created_at < prev.finished_at and j.attempt = 1`,
    [new Date(since), new Date(until)],
  );
}
