/* Recovery: jobs whose runner is gone, stuck or past their timeout. */
import type { Queryable } from '../store/db.js';
import { refreshBusyIdle } from '../store/queries/runners.js';
import type { JobState } from './job.js';

/**
 * The recovery path for jobs whose runner is gone, stuck or lost its claim: back to queued
 * while attempts remain, otherwise failed with the reason. Returns what happened to each job.
 *
 * `runnerId` limits it to jobs still held by that runner (the caller read the ids earlier; a
 * job requeued and claimed by another runner since must not be touched). `refundUnstarted`
 * gives back the attempt of a job that was claimed but never started (a claim response lost on
 * the wire), so such a job does not fail without having run.
 */
export async function recoverJobs(
  q: Queryable,
  now: number,
  jobIds: number[],
  reason: string,
  opts: { runnerId?: string; refundUnstarted?: boolean } = {},
): Promise<{ id: number; from: JobState; to: JobState }[]> {
  if (jobIds.length === 0) return [];
  const rows = await q.query(
    `with lost as (
       select id, state as from_state, runner_id as prev_runner,
              attempt - case when $5 and state = 'claimed' then 1 else 0 end as att
       from jobs where id = any($1::bigint[]) and state in ('claimed', 'running') and ($4::uuid is null or runner_id = $4)
       for update
     ), upd as (
       update jobs j set
         attempt = lost.att,
         state = case when j.cancel_requested then 'cancelled' when lost.att < j.max_attempts then 'queued' else 'failed' end,
         runner_id = case when not j.cancel_requested and lost.att < j.max_attempts then null else j.runner_id end,
         queued_at = case when not j.cancel_requested and lost.att < j.max_attempts then $2 else j.queued_at end,
         started_at = case when not j.cancel_requested and lost.att < j.max_attempts then null else j.started_at end,
         finished_at = case when j.cancel_requested or lost.att >= j.max_attempts then $2 end,
         secrets_enc = case when j.cancel_requested or lost.att >= j.max_attempts then null else j.secrets_enc end,
         error = case when j.cancel_requested then 'cancelled' when lost.att >= j.max_attempts
                      then $3 || ' (attempt ' || lost.att || ' of ' || j.max_attempts || ')' else j.error end
       from lost where j.id = lost.id
       returning j.id, lost.from_state, lost.prev_runner, j.state, j.attempt, j.max_attempts
     ), ev as (
       insert into events (at, kind, subject, from_state, to_state, reason, actor)
       select $2, 'job', id::text, from_state, state, $3 || ' (attempt ' || attempt || ' of ' || max_attempts || ')', 'recovery' from upd
     )
     select id, from_state, prev_runner, state from upd order by id`,
    [jobIds, new Date(now), reason, opts.runnerId ?? null, opts.refundUnstarted ?? false],
  );
  await refreshRunnersOf(q, now, rows.map((r) => r.prev_runner));
  return rows.map((r) => ({ id: r.id, from: r.from_state, to: r.state }));
}

/** A runner that lost its jobs to recovery is idle again (and so can be scaled down). */
async function refreshRunnersOf(q: Queryable, now: number, runnerIds: (string | null)[]) {
  await refreshBusyIdle(q, now, runnerIds.filter((r): r is string => !!r));
}

export async function activeJobIdsOfRunner(q: Queryable, runnerId: string): Promise<number[]> {
  return (await q.query(`select id from jobs where runner_id = $1 and state in ('claimed', 'running')`, [runnerId])).map((r) => r.id);
}

/** Running jobs with no log activity and no heartbeat from their runner since `cutoff`. */
export async function findStuckJobs(q: Queryable, cutoff: number): Promise<number[]> {
  const rows = await q.query(
    `select j.id from jobs j left join runners r on r.id = j.runner_id
     where j.state in ('claimed', 'running') and coalesce(j.last_activity_at, j.claimed_at) < $1
       and (r.id is null or r.last_heartbeat_at is null or r.last_heartbeat_at < $1)`,
    [new Date(cutoff)],
  );
  return rows.map((r) => r.id);
}

/**
 * Jobs past their timeout plus a grace period: the runner should have killed them; the server
 * records them timed_out so nothing waits forever. Returns them so their runners can be told.
 */
export async function expireTimedOutJobs(q: Queryable, now: number, graceMs: number): Promise<{ id: number; runnerId: string | null }[]> {
  const rows = await q.query(
    `with expired as (
       select id, state from jobs
       where state in ('claimed', 'running') and coalesce(started_at, claimed_at) + (timeout_ms + $2::bigint) * interval '1 millisecond' < $1
       for update
     ), upd as (
       update jobs j set state = 'timed_out', finished_at = $1, error = 'exceeded timeout of ' || j.timeout_ms || 'ms', secrets_enc = null
       from expired where j.id = expired.id
       returning j.id, j.runner_id, expired.state as from_state
     ), ev as (
       insert into events (at, kind, subject, from_state, to_state, reason, actor)
       select $1, 'job', id::text, from_state, 'timed_out', 'timeout enforced by server', 'recovery' from upd
     )
     select id, runner_id from upd`,
    [new Date(now), graceMs],
  );
  return rows.map((r) => ({ id: r.id, runnerId: r.runner_id }));
}

/** How many of these jobs each pool holds (to wake a pool's claims after a recovery). */
export async function countJobsByPool(q: Queryable, jobIds: number[]): Promise<{ pool: string; n: number }[]> {
  if (jobIds.length === 0) return [];
  return q.query('select pool, count(*)::int as n from jobs where id = any($1::bigint[]) group by pool', [jobIds]);
}
