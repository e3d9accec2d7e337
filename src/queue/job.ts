/*
 * The job queue: a job's shape and its states. Each transition has its own file: submit.ts
 * (enqueue), claim.ts, report.ts (start, logs, result), cancel.ts, retry.ts, recover.ts; read.ts
 * reads jobs and logs. States:
 *
 *   queued ──claim──▶ claimed ──start──▶ running ──result──▶ succeeded | failed | cancelled | timed_out
 *     ▲                  │                  │
 *     └──── runner lost / stuck / lost claim (attempt < maxAttempts) ─┘   otherwise: failed
 *
 * Every report from a runner is fenced by (runner_id, attempt): a runner that lost its claim
 * (the job was requeued and claimed again) is refused with a ConflictError.
 */

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
export const jobColumns = (alias: string) => JOB_COLUMNS.map((c) => `${alias}.${c}`).join(', ');

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

export interface Fence {
  jobId: number;
  runnerId: string;
  attempt: number;
}

/** Log lines are stored as the runner sends them. */
export type { LogLine } from '../protocol/runner.js';
