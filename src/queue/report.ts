/*
 * A runner's reports on a job it holds: started, log lines, result. Each is fenced by (runner,
 * attempt): a runner that lost its claim is refused with a ConflictError.
 */
import type { Queryable } from '../store/db.js';
import { recordEvents } from '../store/queries/events.js';
import { ConflictError, NotFoundError } from '../lib/errors.js';
import { ACTIVE_STATES, jobColumns, toJob, type Fence, type Job, type JobState, type LogLine } from './job.js';

/*
 * Prepared statements run with a generic plan, which cannot see that `id = $1` is one row: with
 * `runner_id = $2` beside it the planner may take the runner's index (jobs_active) instead of the
 * primary key, and walk every dead entry of that runner's finished jobs until a vacuum (measured:
 * end-to-end throughput halved over 100,000 jobs). The fences below therefore compare runner_id
 * with `is not distinct from`, which no index serves, so the primary key is the only way in.
 */

async function fenced(q: Queryable, f: Fence, lock = false): Promise<any> {
  const rows = await q.query(`select * from jobs where id = $1 ${lock ? 'for update' : ''}`, [f.jobId]);
  const row = rows[0];
  if (!row) throw new NotFoundError(`job ${f.jobId} not found`);
  if (row.runner_id !== f.runnerId || row.attempt !== f.attempt || !ACTIVE_STATES.includes(row.state))
    throw new ConflictError(`runner ${f.runnerId} no longer holds the claim on job ${f.jobId} (attempt ${f.attempt})`);
  return row;
}

/** claimed -> running, when the runner has started the job's process. */
export async function markRunning(q: Queryable, now: number, f: Fence): Promise<Job> {
  const rows = await q.query(
    { name: 'mark_running', text: `with upd as (
       update jobs j set state = 'running', started_at = $4, last_activity_at = $4
       where id = $1 and runner_id is not distinct from $2::uuid and attempt = $3 and state = 'claimed'
       returning ${jobColumns('j')}
     ), ev as (
       insert into events (at, kind, subject, from_state, to_state, reason, actor)
       select $4, 'job', id::text, 'claimed', 'running', 'process started', $2::text from upd
     )
     select * from upd` },
    [f.jobId, f.runnerId, f.attempt, new Date(now)],
  );
  if (rows[0]) return toJob(rows[0]);
  return toJob(await fenced(q, f)); // already running is fine; a lost claim throws
}

/**
 * Appends one batch of log lines. Batches are idempotent by seq (a retried batch is ignored),
 * and fenced: only the runner holding the claim may write. Returns whether cancel was requested.
 * The runner's seq counts from 1 in each attempt; it is stored after the earlier attempts' logs.
 */
export async function appendLogs(q: Queryable, now: number, f: Fence, seq: number, lines: LogLine[]): Promise<{ cancelRequested: boolean }> {
  const rows = await q.query(
    { name: 'append_logs', text: `with j as (
       update jobs set last_activity_at = $5, log_seq = greatest(log_seq, log_base + $4)
       where id = $1 and runner_id is not distinct from $2::uuid and attempt = $3 and state in ('claimed', 'running')
       returning id, log_base, cancel_requested
     ), ins as (
       insert into job_logs (job_id, seq, at, lines) select id, log_base + $4, $5, $6::jsonb from j
       on conflict (job_id, seq) do nothing
     )
     select cancel_requested from j` },
    [f.jobId, f.runnerId, f.attempt, seq, new Date(now), JSON.stringify(lines)],
  );
  if (!rows[0]) await fenced(q, f);
  return { cancelRequested: rows[0]?.cancel_requested ?? false };
}

export interface JobResult {
  exitCode: number | null;
  output?: unknown;
  error?: string | null;
  /** Set by the runner when it killed the job itself. */
  outcome?: 'cancelled' | 'timed_out';
}

/** Records a runner's result. A non-zero exit is retried only when the job asked for it. */
export async function completeJob(q: Queryable, now: number, f: Fence, result: JobResult): Promise<Job> {
  const row = await fenced(q, f, true);
  let state: JobState;
  let reason: string;
  if (row.cancel_requested || result.outcome === 'cancelled') [state, reason] = ['cancelled', 'cancelled'];
  else if (result.outcome === 'timed_out') [state, reason] = ['timed_out', `exceeded timeout of ${row.timeout_ms}ms`];
  else if (result.exitCode === 0) [state, reason] = ['succeeded', 'exit code 0'];
  else [state, reason] = ['failed', result.error ?? `exit code ${result.exitCode}`];

  if (state === 'failed' && row.retry_on_failure && row.attempt < row.max_attempts) {
    const [requeued] = await q.query(
      `update jobs set state = 'queued', runner_id = null, queued_at = $2, exit_code = $3, error = $4, output = $5 where id = $1 returning *`,
      [f.jobId, new Date(now), result.exitCode, reason, JSON.stringify(result.output ?? null)],
    );
    await recordEvents(q, now, [{ kind: 'job', subject: String(f.jobId), from: row.state, to: 'queued', reason: `retry after ${reason} (attempt ${row.attempt} of ${row.max_attempts})`, actor: f.runnerId }]);
    return toJob(requeued);
  }
  const [done] = await q.query(
    `update jobs set state = $2, exit_code = $3, output = $4, error = $5, finished_at = $6, last_activity_at = $6, secrets_enc = null
     where id = $1 returning *`,
    [f.jobId, state, result.exitCode, JSON.stringify(result.output ?? null), result.error ?? (state === 'succeeded' ? null : reason), new Date(now)],
  );
  await recordEvents(q, now, [{ kind: 'job', subject: String(f.jobId), from: row.state, to: state, reason, actor: f.runnerId }]);
  return toJob(done);
}

export interface FencedResult {
  fence: Fence;
  result: JobResult;
}

/** Per result of completeJobs(): the job as recorded, or why the report was refused. */
export type Completion = { job: Job } | { error: ConflictError | NotFoundError };

/**
 * Records many runners' results in one statement, fenced per job by (runner, attempt, active
 * state) exactly as completeJob() is, with their audit events in the same statement. A result
 * whose fence fails, a failure that must be retried and a job reported twice in one call take
 * the one-by-one path (completeJob), so every result gets the answer it would get alone.
 * Call it inside a transaction: the fallback locks rows until the caller commits.
 * Outcomes are in the order of `results`.
 */
export async function completeJobs(q: Queryable, now: number, results: FencedResult[]): Promise<Completion[]> {
  const seen = new Set<number>();
  const firsts = results.map((r) => !seen.has(r.fence.jobId) && !!seen.add(r.fence.jobId));
  const rows = await q.query(
    // Not prepared: its plan depends on how many results and which jobs a batch holds, which a
    // generic plan cannot know (see the note on generic plans above).
    `with r as (
       select * from jsonb_to_recordset($2::jsonb)
         as r(ord int, id bigint, runner_id uuid, attempt int, exit_code int, output jsonb, error text, outcome text)
     ), old as (
       select j.id, j.state, j.cancel_requested, j.timeout_ms from jobs j join r on r.id = j.id
       where j.runner_id = r.runner_id and j.attempt = r.attempt and j.state in ('claimed', 'running')
       order by j.id
       for update of j
     ), dec as (
       select r.*, old.state as from_state,
         case when old.cancel_requested or r.outcome = 'cancelled' then 'cancelled' when r.outcome = 'timed_out' then 'timed_out'
              when r.exit_code = 0 then 'succeeded' else 'failed' end as to_state,
         case when old.cancel_requested or r.outcome = 'cancelled' then 'cancelled'
              when r.outcome = 'timed_out' then 'exceeded timeout of ' || old.timeout_ms || 'ms'
              when r.exit_code = 0 then 'exit code 0'
              else coalesce(r.error, 'exit code ' || coalesce(r.exit_code::text, 'null')) end as reason
       from old join r on r.id = old.id
     ), upd as (
       update jobs j set state = dec.to_state, exit_code = dec.exit_code, output = coalesce(dec.output, 'null'::jsonb),
         error = coalesce(dec.error, case when dec.to_state = 'succeeded' then null else dec.reason end),
         finished_at = $1, last_activity_at = $1, secrets_enc = null
       from dec
       where j.id = dec.id and not (dec.to_state = 'failed' and j.retry_on_failure and j.attempt < j.max_attempts)
       returning ${jobColumns('j')}, dec.ord, dec.from_state, dec.reason as event_reason
     ), ev as (
       insert into events (at, kind, subject, from_state, to_state, reason, actor)
       select $1, 'job', id::text, from_state, state, event_reason, runner_id::text from upd
     )
     select * from upd`,
    [
      new Date(now),
      JSON.stringify(
        results
          .map(({ fence: f, result: r }, ord) => ({ ord, id: f.jobId, runner_id: f.runnerId, attempt: f.attempt, exit_code: r.exitCode, output: r.output ?? null, error: r.error ?? null, outcome: r.outcome ?? null }))
          .filter((_, i) => firsts[i]),
      ),
    ],
  );
  const out: (Completion | undefined)[] = new Array(results.length);
  for (const row of rows) out[row.ord] = { job: toJob(row) };
  for (let i = 0; i < results.length; i++) {
    if (out[i]) continue;
    try {
      out[i] = { job: await completeJob(q, now, results[i]!.fence, results[i]!.result) };
    } catch (err) {
      if (!(err instanceof ConflictError || err instanceof NotFoundError)) throw err;
      out[i] = { error: err };
    }
  }
  return out as Completion[];
}
