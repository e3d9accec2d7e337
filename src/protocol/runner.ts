/*
 * The runner protocol's wire types, shared by the agent (src/agent/runner-client.ts) and the
 * control plane's handlers (src/api/runner-protocol.ts). Types only: the agent imports them with
 * `import type`, so nothing of the control plane enters its bundle.
 *
 *   POST /api/v1/runners/register          RegisterRequest   → RegisterResponse (201)
 *   GET  /api/v1/runners/{id}/control      server-sent events: ControlEventName + data
 *   POST /api/v1/runners/{id}/heartbeat    HeartbeatRequest  → HeartbeatResponse
 *   POST /api/v1/runners/{id}/claim        ClaimRequest      → ClaimResponse (long poll)
 *   POST /api/v1/runners/{id}/offline      {}                → OkResponse
 *   POST /api/v1/runners/{id}/deregister   {}                → OkResponse
 *   POST /api/v1/jobs/{id}/start           StartRequest      → StartResponse
 *   POST /api/v1/jobs/{id}/logs            LogsRequest       → LogsResponse
 *   POST /api/v1/jobs/{id}/result          JobResultBody     → ResultResponse
 *
 * Errors are `{error: {code, message}}` with the status saying what the runner does: 401
 * credential refused, 409 the claim is not (or no longer) this runner's, 410 the runner was
 * terminated, 5xx/429 try again (see src/agent/errors.ts, classify()).
 */

/** What a runner is told at registration (and may rely on until it registers again). */
export interface RunnerConfig {
  pool: string;
  maxJobsPerRunner: number;
  ephemeral: boolean;
  heartbeatIntervalMs: number;
  pingIntervalMs: number;
  idleTimeoutMs: number;
  jobTimeoutMs: number;
  setup: string[];
  env: Record<string, string>;
  distribution: { digest: string; name: string; size: number } | null;
  /** The server takes numbered claims and heartbeats listing the unseen ones (absent: older server). */
  claimSeq?: boolean;
  /** The runner's lease on its jobs, renewed by answered heartbeats (absent: older server, no lease). */
  leaseMs?: number;
  /** SIGTERM-to-SIGKILL grace for jobs whose lease ran out. */
  leaseKillGraceMs?: number;
  /** The live control planes' URLs (absent: older server). */
  servers?: string[];
}

export interface RegisterRequest {
  id: string;
  name: string;
  version: string;
  publicKey: string;
  labels: string[];
}

export interface RegisterResponse {
  runner: { id: string; name: string; pool: string; state: string };
  /** In clear only when this registration bound the runner's key for the first time. */
  credential?: string;
  /** The credential sealed to the runner's public key ({credential}); absent from older servers. */
  sealedCredential?: string;
  config: RunnerConfig;
}

export interface HeartbeatRequest {
  version: string;
  /** The jobs (id, attempt) the runner is running. */
  jobs: { id: number; attempt: number }[];
  /** Claim requests (their `seq`) the runner gave up on before an answer. */
  abandoned?: number[];
}

export interface HeartbeatResponse {
  state: string;
  /** Jobs to cancel. */
  cancel: number[];
  /** Jobs the runner runs but no longer holds: it stops them unreported. */
  lost: number[];
  servers?: string[];
}

export interface ClaimRequest {
  max: number;
  waitMs: number;
  /** The runner's number for this request, so it can report it abandoned (RunnerConfig.claimSeq). */
  seq?: number;
}

/** A job as handed out by `claim`. */
export interface ClaimedJob {
  id: number;
  attempt: number;
  pool: string;
  commands: string[];
  payload: unknown;
  env: Record<string, string>;
  /** Sealed to this runner's public key, or null. */
  secrets: string | null;
  timeoutMs: number;
}

export interface ClaimResponse {
  jobs: ClaimedJob[];
  /** The runner was terminated while it waited. */
  stop?: boolean;
}

/** The fence of every job call: the claim's attempt. */
export interface StartRequest {
  attempt: number;
}

export interface StartResponse {
  state: string;
  cancel: boolean;
}

/** One line of a job's output. */
export interface LogLine {
  /** epoch ms when the runner read the line */
  t: number;
  /** 'o' stdout, 'e' stderr, 's' system (runner messages) */
  s: 'o' | 'e' | 's';
  m: string;
}

export interface LogsRequest {
  attempt: number;
  /** Counts from 1 in each attempt; a batch sent again with the same seq is ignored. */
  seq: number;
  lines: LogLine[];
}

export interface LogsResponse {
  cancel: boolean;
}

export interface JobResultBody {
  attempt: number;
  exitCode: number | null;
  output?: unknown;
  error?: string | null;
  outcome?: 'cancelled' | 'timed_out';
  durationMs?: number;
}

export interface ResultResponse {
  state: string;
}

export interface OkResponse {
  ok: true;
}

/** The control channel's events (server-sent events on GET /runners/{id}/control). */
export type ControlEventName = 'hello' | 'ping' | 'job' | 'cancel' | 'disable' | 'enable' | 'drain' | 'delete';

/** Each control event's data. */
export interface ControlEventData {
  /** The state the server holds for the runner, first on every connection. */
  hello: { state: string };
  ping: { at: number };
  /** Work for this runner's pool: claim now. */
  job: { pool: string };
  cancel: { jobId: number };
  disable: Record<string, never>;
  enable: Record<string, never>;
  drain: Record<string, never>;
  delete: Record<string, never>;
}
