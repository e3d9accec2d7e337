/**
 * The runner side of the protocol in src/api/runner-protocol.ts: one method per endpoint, typed
 * bodies, and errors sorted into HttpError (the server answered) and NetworkError (it did not).
 * Every call has a deadline, so a silent network never hangs a loop.
 */
import { HttpError, NetworkError } from './errors.js';

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
  credential: string;
  config: RunnerConfig;
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

export interface HeartbeatResponse {
  state: string;
  cancel: number[];
  lost: number[];
}

export interface LogLine {
  t: number;
  s: 'o' | 'e' | 's';
  m: string;
}

export interface JobResultBody {
  attempt: number;
  exitCode: number | null;
  output?: unknown;
  error?: string | null;
  outcome?: 'cancelled' | 'timed_out';
  durationMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export class RunnerClient {
  /** The runner credential, set after registration. */
  credential: string | undefined;

  constructor(
    readonly server: string,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  register(registrationToken: string, body: RegisterRequest, signal?: AbortSignal): Promise<RegisterResponse> {
    return this.json('POST', '/api/v1/runners/register', body, { token: registrationToken, signal });
  }

  heartbeat(runnerId: string, body: { version: string; jobs: { id: number; attempt: number }[] }, signal?: AbortSignal): Promise<HeartbeatResponse> {
    return this.json('POST', `/api/v1/runners/${runnerId}/heartbeat`, body, { signal });
  }

  claim(runnerId: string, body: { max: number; waitMs: number }, signal?: AbortSignal): Promise<{ jobs: ClaimedJob[]; stop?: boolean }> {
    return this.json('POST', `/api/v1/runners/${runnerId}/claim`, body, { signal, timeoutMs: body.waitMs + 15_000 });
  }

  deregister(runnerId: string, signal?: AbortSignal): Promise<unknown> {
    return this.json('POST', `/api/v1/runners/${runnerId}/deregister`, {}, { signal, timeoutMs: 10_000 });
  }

  startJob(jobId: number, attempt: number, signal?: AbortSignal): Promise<{ state: string; cancel: boolean }> {
    return this.json('POST', `/api/v1/jobs/${jobId}/start`, { attempt }, { signal });
  }

  postLogs(jobId: number, body: { attempt: number; seq: number; lines: LogLine[] }, signal?: AbortSignal): Promise<{ cancel: boolean }> {
    return this.json('POST', `/api/v1/jobs/${jobId}/logs`, body, { signal });
  }

  postResult(jobId: number, body: JobResultBody, signal?: AbortSignal): Promise<{ state: string }> {
    return this.json('POST', `/api/v1/jobs/${jobId}/result`, body, { signal });
  }

  /** Opens the control channel; the caller reads the SSE body. Aborting `signal` closes it. */
  async openControl(runnerId: string, signal: AbortSignal): Promise<Response> {
    return this.send('GET', `/api/v1/runners/${runnerId}/control`, undefined, { signal, timeoutMs: 0, accept: 'text/event-stream' });
  }

  /** Downloads an artifact; returns its bytes and the digest the server claims for them. */
  async downloadArtifact(digest: string, signal?: AbortSignal): Promise<{ body: Buffer; digest: string | null }> {
    const res = await this.send('GET', `/api/v1/artifacts/${encodeURIComponent(digest)}`, undefined, { signal, timeoutMs: 300_000 });
    if (!res.ok) throw await toHttpError(res);
    try {
      return { body: Buffer.from(await res.arrayBuffer()), digest: res.headers.get('x-runyard-digest') };
    } catch (err) {
      throw new NetworkError(`download of ${digest} was interrupted: ${(err as Error).message}`, { cause: err });
    }
  }

  private async json<T>(method: string, path: string, body: unknown, opts: { token?: string; signal?: AbortSignal; timeoutMs?: number }): Promise<T> {
    const res = await this.send(method, path, body, opts);
    if (!res.ok) throw await toHttpError(res);
    try {
      return (await res.json()) as T;
    } catch (err) {
      throw new NetworkError(`${method} ${path}: unreadable response (${(err as Error).message})`, { cause: err });
    }
  }

  private async send(
    method: string,
    path: string,
    body: unknown,
    opts: { token?: string; signal?: AbortSignal; timeoutMs?: number; accept?: string },
  ): Promise<Response> {
    const token = opts.token ?? this.credential;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const signals = [opts.signal, timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined].filter((s): s is AbortSignal => !!s);
    try {
      return await this.fetchImpl(this.server + path, {
        method,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(opts.accept ? { accept: opts.accept } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: signals.length ? AbortSignal.any(signals) : undefined,
      });
    } catch (err) {
      if (opts.signal?.aborted) throw err; // the caller cancelled: not a network problem
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs}ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
      throw new NetworkError(`${method} ${path}: ${why}`, { cause: err });
    }
  }
}

async function toHttpError(res: Response): Promise<HttpError> {
  let message = res.statusText;
  let code: string | undefined;
  try {
    const text = await res.text();
    try {
      const j = JSON.parse(text);
      message = j?.error?.message ?? message;
      code = j?.error?.code;
    } catch {
      if (text) message = text.slice(0, 200);
    }
  } catch {
    // body unreadable: the status says enough
  }
  return new HttpError(res.status, message, code);
}
