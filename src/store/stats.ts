/** Counts for the dashboard's overview, pools and metrics, computed in SQL (no job lists downloaded). */
import type { Queryable } from './db.js';

export const FINAL_STATES = ['succeeded', 'failed', 'cancelled', 'timed_out'] as const;
export type FinalState = (typeof FINAL_STATES)[number];

/** Unfinished jobs and live runners by pool and state, waits since `since`, jobs finished per minute in [since, until]. */
export async function overviewCounts(q: Queryable, since: Date, until: Date) {
  const [jobRows, runnerRows, waitRows, finishedRows] = await Promise.all([
    q.query<{ pool: string; state: string; n: number; oldest: Date | null }>(
      `select pool, state, count(*)::int as n, min(queued_at) as oldest from jobs
       where state in ('queued', 'claimed', 'running') group by pool, state`,
    ),
    q.query<{ pool: string; state: string; n: number; slots: number }>(
      `select pool, state, count(*)::int as n, coalesce(sum(slots), 0)::int as slots from runners
       where state <> 'terminated' group by pool, state`,
    ),
    q.query<{ pool: string; ms: number | null }>(
      `select pool, (avg(extract(epoch from claimed_at - queued_at)) * 1000)::float8 as ms from jobs
       where claimed_at >= $1 group by pool`,
      [since],
    ),
    // Bucket 0 is the oldest minute of the window, bucket 59 the current one.
    q.query<{ bucket: number; state: FinalState; n: number }>(
      `select floor(extract(epoch from finished_at - $1::timestamptz) / 60)::int as bucket, state, count(*)::int as n from jobs
       where finished_at >= $1 and finished_at <= $2 group by 1, 2`,
      [since, until],
    ),
  ]);
  return { jobRows, runnerRows, waitRows, finishedRows };
}

/**
 * Scale events, newest first: what the scheduler and operators did to a pool's fleet. Busy/idle
 * flips are left out; they are the runners working, not the fleet changing size.
 */
export async function scaleEvents(q: Queryable, pool: string | undefined, limit: number) {
  return q.query(
    `select * from (
       select e.id, e.at, e.kind, e.subject, e.from_state, e.to_state, e.reason, e.actor, r.pool, r.name as runner_name
       from events e join runners r on e.kind = 'runner' and e.subject = r.id::text
       where ($1::text is null or r.pool = $1)
         and (e.to_state is null or e.to_state in ('starting', 'draining', 'offline', 'disabled', 'terminated')
              or (e.to_state = 'idle' and e.from_state is distinct from 'busy'))
       union all
       select e.id, e.at, e.kind, e.subject, e.from_state, e.to_state, e.reason, e.actor, e.subject as pool, null as runner_name
       from events e
       where e.kind in ('pool', 'scheduler') and ($1::text is null or e.subject = $1)
     ) x order by id desc limit $2`,
    [pool ?? null, limit],
  );
}
