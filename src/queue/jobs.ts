/*
 * The job queue. States:
 *
 *   queued ──claim──▶ claimed ──start──▶ running ──result──▶ succeeded | failed | cancelled | timed_out
 *     ▲                  │                  │
 *     └──── runner lost / stuck / lost claim (attempt < maxAttempts) ─┘   otherwise: failed
 *
 * Every report from a runner is fenced by (runner_id, attempt): a runner that lost its claim
 * (the job was requeued and claimed again) is refused with a ConflictError.
 */
import type { Queryable } from '../store/db.js';
import { recordEvents } from '../store/queries/events.js';
import { ConflictError, NotFoundError } from '../lib/errors.js';
import { refreshBusyIdle } from '../store/queries/runners.js';
import type { LogLine } from '../protocol/runner.js';

export type JobState = 'queued' | 'claimed' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out';
export const ACTIVE_STATES: JobState[] = ['claimed', 'running'];
export const FINAL_STATES: JobState[] = ['succeeded', 'failed', 'cancelled', 'timed_out'];

export interface JobSpec {
  pool: string;
  commands: string[];
  payload?: unknown;
  env?: Record<string, string>;
  /** Already encrypted with the server's key. */
  secretsEnc?: string | null;
  secretNames?: string[];
  labels?: string[];
  image?: string | null;
  source?: string;
  externalId?: string | null;
  idempotencyKey?: string | null;
  maxAttempts?: number;
  retryOnFailure?: boolean;
  timeoutMs: number;
}

export interface Job {
  id: number;
  pool: string;
  state: JobState;
  commands: string[];
  payload: unknown;
  env: Record<string, string>;
  secretNames: string[];
  labels: string[];
  image: string | null;
  source: string;
  externalId: string | null;
  idempotencyKey: string | null;
  attempt: number;
  maxAttempts: number;
  retryOnFailure: boolean;
  timeoutMs: number;
  runnerId: string | null;
  cancelRequested: boolean;
  exitCode: number | null;
  output: unknown;
  error: string | null;
  createdAt: Date;
  queuedAt: Date;
  claimedAt: Date | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  lastActivityAt: Date | null;
}

/** A claimed job as handed to a runner, with its server-encrypted secrets. */
export interface ClaimedJob extends Job {
  secretsEnc: string | null;
}

/**
 * The columns toJob() reads. Hot statements return these by name rather than `j.*`, so they can
 * be prepared: a prepared `*` fails ("cached plan must not change result type") once a migration
 * adds a column under a live connection, as another server's upgrade would.
 */
const JOB_COLUMNS = [
  'id', 'pool', 'state', 'commands', 'payload', 'env', 'secret_names', 'labels', 'image', 'source', 'external_id', 'idempotency_key',
  'attempt', 'max_attempts', 'retry_on_failure', 'timeout_ms', 'runner_id', 'cancel_requested', 'exit_code', 'output', 'error',
  'created_at', 'queued_at', 'claimed_at', 'started_at', 'finished_at', 'last_activity_at',
];
const jobColumns = (alias: string) => JOB_COLUMNS.map((c) => `${alias}.${c}`).join(', ');

/*
 * Prepared statements run with a generic plan, which cannot see that `id = $1` is one row: with
 * `runner_id = $2` beside it the planner may take the runner's index (jobs_active) instead of the
 * primary key, and walk every dead entry of that runner's finished jobs until a vacuum (measured:
 * end-to-end throughput halved over 100,000 jobs). The fences below therefore compare runner_id
 * with `is not distinct from`, which no index serves, so the primary key is the only way in.
 */

export function toJob(r: any): Job {
  return {
    id: r.id,
    pool: r.pool,
    state: r.state,
    commands: r.commands,
    payload: r.payload ?? null,
    env: r.env ?? {},
    secretNames: r.secret_names ?? [],
    labels: r.labels ?? [],
    image: r.image,
    source: r.source,
    externalId: r.external_id,
    idempotencyKey: r.idempotency_key,
    attempt: r.attempt,
    maxAttempts: r.max_attempts,
    retryOnFailure: r.retry_on_failure,
    timeoutMs: r.timeout_ms,
    runnerId: r.runner_id,
    cancelRequested: r.cancel_requested,
    exitCode: r.exit_code,
    output: r.output ?? null,
    error: r.error,
    createdAt: r.created_at,
    queuedAt: r.queued_at,
    claimedAt: r.claimed_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    lastActivityAt: r.last_activity_at,
  };
}

/**
 * Inserts jobs in one statement. A spec whose idempotency key was seen before returns the
 * existing job instead (created: false). Results are in the order of the specs.
 */
export async function enqueue(q: Queryable, now: number, specs: JobSpec[], actor = 'api'): Promise<{ job: Job; created: boolean }[]> {
  if (specs.length === 0) return [];
  const rows = specs.map((s, i) => ({
    ord: i,
    pool: s.pool,
    commands: s.commands,
    payload: s.payload ?? null,
    env: s.env ?? {},
    secrets_enc: s.secretsEnc ?? null,
    secret_names: s.secretNames ?? [],
    labels: s.labels ?? [],
    image: s.image ?? null,
    source: s.source ?? 'api',
    external_id: s.externalId ?? null,
    idempotency_key: s.idempotencyKey ?? null,
    max_attempts: s.maxAttempts ?? 3,
    retry_on_failure: s.retryOnFailure ?? false,
    timeout_ms: s.timeoutMs,
  }));
  const inserted = await q.query(
    `with ins as (
       insert into jobs (pool, state, commands, payload, env, secrets_enc, secret_names, labels, image, source, external_id,
                         idempotency_key, max_attempts, retry_on_failure, timeout_ms, created_at, queued_at)
       select x.pool, 'queued', x.commands, x.payload, x.env, x.secrets_enc, x.secret_names, x.labels, x.image, x.source, x.external_id,
              x.idempotency_key, x.max_attempts, x.retry_on_failure, x.timeout_ms, $1, $1
       from jsonb_to_recordset($2::jsonb) as x(ord int, pool text, commands jsonb, payload jsonb, env jsonb, secrets_enc text,
              secret_names jsonb, labels jsonb, image text, source text, external_id text, idempotency_key text,
              max_attempts int, retry_on_failure boolean, timeout_ms bigint)
       order by x.ord
       on conflict (idempotency_key) where idempotency_key is not null do nothing
       returning *
     ), ev as (
       insert into events (at, kind, subject, to_state, reason, actor)
       select $1, 'job', id::text, 'queued', 'submitted', $3 from ins
     )
     select * from ins order by id`,
    [new Date(now), JSON.stringify(rows), actor],
  );
  const byKey = new Map<string, Job>();
  const unkeyed: Job[] = [];
  for (const r of inserted) {
    const job = toJob(r);
    if (job.idempotencyKey) byKey.set(job.idempotencyKey, job);
    else unkeyed.push(job);
  }
  const missingKeys = specs.map((s) => s.idempotencyKey).filter((k): k is string => !!k && !byKey.has(k));
  const existing = new Map<string, Job>();
  if (missingKeys.length > 0) {
    for (const r of await q.query('select * from jobs where idempotency_key = any($1::text[])', [missingKeys])) existing.set(r.idempotency_key, toJob(r));
  }
  let u = 0;
  return specs.map((s) => {
    if (!s.idempotencyKey) return { job: unkeyed[u++]!, created: true };
    const fresh = byKey.get(s.idempotencyKey);
    if (fresh) {
      byKey.delete(s.idempotencyKey); // a key repeated inside one batch: later ones get the same job
      existing.set(s.idempotencyKey, fresh);
      return { job: fresh, created: true };
    }
    return { job: existing.get(s.idempotencyKey)!, created: false };
  });
}

// Both claims end alike: the picked jobs move to claimed for `runner` at `at`, with their events.
const claimUpdate = (runner: string, at: string) => `upd as (
       update jobs j set state = 'claimed', runner_id = ${runner}, attempt = j.attempt + 1, claimed_at = ${at}, last_activity_at = ${at}, started_at = null,
         log_base = j.log_seq
       from picked where j.id = picked.id
       returning ${jobColumns('j')}, j.secrets_enc
     ), ev as (
       insert into events (at, kind, subject, from_state, to_state, reason, actor)
       select ${at}, 'job', id::text, 'queued', 'claimed', 'claimed by runner', ${runner}::text from upd
     )`;

const toClaimed = (r: any): ClaimedJob => ({ ...toJob(r), secretsEnc: r.secrets_enc });

/**
 * Atomically claims up to `max` queued jobs of `pool` for one runner. Concurrent claimers
 * skip each other's locked rows, so no job is ever handed to two runners. A runner takes only
 * jobs of its own image (`null`: the pool's image), so runners of different images never mix.
 */
export async function claimJobs(q: Queryable, now: number, runnerId: string, pool: string, max: number, image: string | null = null): Promise<ClaimedJob[]> {
  if (max <= 0) return [];
  const rows = await q.query(
    `with picked as (
       select id from jobs where state = 'queued' and pool = $1 and ($5::text is null and image is null or image = $5)
       order by id limit $2 for update skip locked
     ), ${claimUpdate('$3', '$4')}
     select * from upd order by id`,
    [pool, max, runnerId, new Date(now), image],
  );
  return rows.map(toClaimed);
}

export interface RunnerClaim {
  /** the runner's state when it asked (terminated: it must stop) */
  runnerState: string;
  publicKey: string | null;
  /** each with its pool's env under its own */
  jobs: ClaimedJob[];
}

/**
 * A runner's claim in one statement: locks the runner row, counts its free slots (none unless
 * idle or busy with its pool's current config; an ephemeral runner takes one job in its life),
 * claims jobs of its pool and image, bumps jobs_started, moves idle to busy, records the events.
 *
 * The slot count reads jobs as of the statement's start; a claim of the same runner that
 * commits while this one waits for the runner's lock would not be counted. That claim bumped
 * jobs_started, so the statement compares the locked row with the one it saw, claims nothing
 * when they differ, and runs again.
 */
export async function claimForRunner(q: Queryable, now: number, runnerId: string, max: number): Promise<RunnerClaim> {
  for (;;) {
    const rows = await q.query(
      { name: 'claim_for_runner', text: `with seen as (
         select jobs_started from runners where id = $1
       ), r as (
         select r.state, r.pool, r.image, r.public_key, r.jobs_started, p.config->'env' as pool_env,
           r.state in ('idle', 'busy') and (r.config_hash is null or r.config_hash = p.config_hash) as can_claim,
           least($2::int, r.slots - (select count(*)::int from jobs where runner_id = $1 and state in ('claimed', 'running')),
                 case when not r.ephemeral then $2::int when r.jobs_started > 0 then 0 else 1 end) as free
         from runners r join pools p on p.name = r.pool
         where r.id = $1
         for update of r
       ), lim as (
         select r.*, r.jobs_started <> (select jobs_started from seen) as raced from r
       ), picked as (
         select id from jobs
         where state = 'queued' and pool = (select pool from lim)
           and ((select image from lim) is null and image is null or image = (select image from lim))
         order by id
         limit coalesce((select case when can_claim and not raced then greatest(free, 0) else 0 end from lim), 0)
         for update skip locked
       ), ${claimUpdate('$1', '$3')}, bump as (
         update runners r set jobs_started = r.jobs_started + n.n,
           state = 'busy', state_reason = case when r.state = 'idle' then 'running jobs' else r.state_reason end,
           state_changed_at = case when r.state = 'idle' then $3 else r.state_changed_at end, idle_since = null
         from (select count(*)::int as n from upd) n
         where r.id = $1 and n.n > 0
         returning (select state from lim) as prev_state
       ), rev as (
         insert into events (at, kind, subject, from_state, to_state, reason, actor)
         select $3, 'runner', $1::text, prev_state, 'busy', 'running jobs', $1::text from bump where prev_state = 'idle'
       )
       select lim.state as r_state, lim.public_key as r_public_key, lim.pool_env as r_pool_env, lim.raced as r_raced, upd.*
       from lim left join upd on true order by upd.id` },
      [runnerId, max, new Date(now)],
    );
    const head = rows[0];
    if (!head) throw new NotFoundError(`runner ${runnerId} not found`);
    if (head.r_raced) continue;
    const env = head.r_pool_env ?? {};
    const jobs = rows.filter((r) => r.id !== null).map(toClaimed);
    for (const j of jobs) j.env = { ...env, ...j.env };
    return { runnerState: head.r_state, publicKey: head.r_public_key, jobs };
  }
}

export interface Fence {
  jobId: number;
  runnerId: string;
  attempt: number;
}

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

/** Log lines are stored as the runner sends them. */
export type { LogLine } from '../protocol/runner.js';

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

export async function queueDepth(q: Queryable): Promise<{ pool: string; state: string; count: number }[]> {
  return q.query(`select pool, state, count(*)::int as count from jobs where state in ('queued', 'claimed', 'running') group by pool, state`);
}
