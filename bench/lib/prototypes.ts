/*
 * Prototypes of changes proposed in the findings, run by the bench to measure their gain.
 * NOT part of runyard: src/ is unchanged; these mirror the semantics of src/queue/jobs.ts for
 * the path the benchmark exercises, so the gain of adopting them there can be measured.
 */
import type { Queryable } from '../../src/store/db.js';

export interface BatchResult {
  jobId: number;
  runnerId: string;
  attempt: number;
  exitCode: number;
}

/**
 * Set-based completion: one statement records many results, fenced per job by (runner,
 * attempt, active state) as completeJob() is, with its audit events. A result whose fence fails,
 * or a failure that must be retried (retryOnFailure), is returned for the one-by-one path.
 */
export async function completeJobsBatch(q: Queryable, now: number, results: BatchResult[]): Promise<{ done: number[]; rest: BatchResult[] }> {
  if (results.length === 0) return { done: [], rest: [] };
  const rows = await q.query<{ id: number }>(
    `with r as (
       select * from unnest($2::bigint[], $3::uuid[], $4::int[], $5::int[]) as r(id, runner_id, attempt, exit_code)
     ), old as (
       select j.id, j.state, j.cancel_requested from jobs j join r on r.id = j.id
       where j.runner_id = r.runner_id and j.attempt = r.attempt and j.state in ('claimed', 'running')
         and not (r.exit_code <> 0 and j.retry_on_failure and j.attempt < j.max_attempts and not j.cancel_requested)
       for update of j
     ), upd as (
       update jobs j set
         state = case when old.cancel_requested then 'cancelled' when r.exit_code = 0 then 'succeeded' else 'failed' end,
         exit_code = r.exit_code, output = 'null'::jsonb,
         error = case when old.cancel_requested then 'cancelled' when r.exit_code = 0 then null else 'exit code ' || r.exit_code end,
         finished_at = $1, last_activity_at = $1, secrets_enc = null
       from old join r on r.id = old.id
       where j.id = old.id
       returning j.id, old.state as from_state, j.state, r.runner_id, r.exit_code
     ), ev as (
       insert into events (at, kind, subject, from_state, to_state, reason, actor)
       select $1, 'job', id::text, from_state, state, case when state = 'cancelled' then 'cancelled' else 'exit code ' || exit_code end, runner_id::text from upd
     )
     select id from upd`,
    [new Date(now), results.map((r) => r.jobId), results.map((r) => r.runnerId), results.map((r) => r.attempt), results.map((r) => r.exitCode)],
  );
  const done = new Set(rows.map((r) => r.id));
  return { done: [...done], rest: results.filter((r) => !done.has(r.jobId)) };
}
