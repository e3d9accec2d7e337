/**
 * The runner side of the protocol in src/api/runner-protocol.ts: one method per endpoint, typed
 * bodies, and errors sorted into HttpError (the server answered) and NetworkError (it did not).
 * Every call has a deadline, so a silent network never hangs a loop.
 */
import http from 'node:http';
import type https from 'node:https';
import { createRequire } from 'node:module';
import type {
  ClaimRequest,
  ClaimResponse,
  HeartbeatRequest,
  HeartbeatResponse,
  JobResultBody,
  LogsRequest,
  LogsResponse,
  OkResponse,
  RegisterRequest,
  RegisterResponse,
  ResultResponse,
  StartResponse,
} from '../protocol/runner.js';
import { HttpError, NetworkError } from './errors.js';

/** The control channel's answer: its status and, while open, the event stream's bytes. */
export interface ControlResponse {
  status: number;
  body: AsyncIterable<Uint8Array> | null;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** node:https (and TLS with it) only for an https server: a few ms of every runner's start otherwise. */
const loadHttps = (): typeof https => createRequire(import.meta.url)('node:https');
/** Keep-alive sockets idle this long are closed (Node's server closes them after 5 s). */
const IDLE_SOCKET_MS = 4000;

export class RunnerClient {
  /** The runner credential, set after registration. */
  credential: string | undefined;
  /** JSON calls (the hot path: claim, start, logs, result, heartbeat) reuse keep-alive sockets. */
  private transport!: typeof http | typeof https;
  private agent!: http.Agent;
  private base!: string;

  constructor(
    server: string,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {
    this.use(server);
  }

  /** The server calls go to now. */
  get server(): string {
    return this.base;
  }

  /**
   * Sends every later call to another server (failover to another control plane on the same
   * database: the credential stays valid). Calls in flight finish or fail where they are.
   */
  use(server: string): void {
    const old = this.agent;
    this.base = server.replace(/\/+$/, '');
    this.transport = new URL(this.base).protocol === 'https:' ? loadHttps() : http;
    // Idle sockets close before a server or proxy would close them under a request.
    this.agent = new this.transport.Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS });
    old?.destroy();
  }

  /** Closes idle keep-alive sockets (they never keep the process alive). */
  close(): void {
    this.agent.destroy();
  }

  register(registrationToken: string, body: RegisterRequest, signal?: AbortSignal): Promise<RegisterResponse> {
    return this.json('POST', '/api/v1/runners/register', body, { token: registrationToken, signal });
  }

  heartbeat(runnerId: string, body: HeartbeatRequest, signal?: AbortSignal): Promise<HeartbeatResponse> {
    return this.json('POST', `/api/v1/runners/${runnerId}/heartbeat`, body, { signal });
  }

  claim(runnerId: string, body: ClaimRequest, signal?: AbortSignal): Promise<ClaimResponse> {
    return this.json('POST', `/api/v1/runners/${runnerId}/claim`, body, { signal, timeoutMs: body.waitMs + 15_000 });
  }

  deregister(runnerId: string, signal?: AbortSignal): Promise<OkResponse> {
    return this.json('POST', `/api/v1/runners/${runnerId}/deregister`, {}, { signal, timeoutMs: 10_000 });
  }

  /** The agent stops for now and keeps its identity (see POST /runners/{id}/offline). */
  goOffline(runnerId: string, signal?: AbortSignal): Promise<OkResponse> {
    return this.json('POST', `/api/v1/runners/${runnerId}/offline`, {}, { signal, timeoutMs: 10_000 });
  }

  startJob(jobId: number, attempt: number, signal?: AbortSignal): Promise<StartResponse> {
    return this.json('POST', `/api/v1/jobs/${jobId}/start`, { attempt }, { signal });
  }

  postLogs(jobId: number, body: LogsRequest, signal?: AbortSignal): Promise<LogsResponse> {
    return this.json('POST', `/api/v1/jobs/${jobId}/logs`, body, { signal });
  }

  postResult(jobId: number, body: JobResultBody, signal?: AbortSignal): Promise<ResultResponse> {
    return this.json('POST', `/api/v1/jobs/${jobId}/result`, body, { signal });
  }

  /**
   * Opens the control channel; the caller reads the SSE body. Aborting `signal` closes it.
   * node:http, as for the JSON calls (a runner's first fetch() costs tens of ms of start-up), but
   * on a connection of its own: a stream that outlives its requests never enters the keep-alive
   * pool, so a claim can never be sent on a socket the channel's reconnects tore down.
   */
  openControl(runnerId: string, signal: AbortSignal): Promise<ControlResponse> {
    return new Promise((resolve, reject) => {
      const req = this.transport.request(
        `${this.server}/api/v1/runners/${runnerId}/control`,
        { method: 'GET', agent: false, signal, headers: { authorization: `Bearer ${this.credential}`, accept: 'text/event-stream' } },
        (res) => resolve({ status: res.statusCode ?? 0, body: res }),
      );
      req.on('error', reject);
      req.end();
    });
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

  /**
   * A JSON call over node:http: lighter per request than fetch, which matters for a runner that
   * makes several calls per job. Errors as for `send`: HttpError for a non-2xx answer,
   * NetworkError when there is none; the caller's abort rejects with its reason.
   */
  private json<T>(method: string, path: string, body: unknown, opts: { token?: string; signal?: AbortSignal; timeoutMs?: number }, retried = false): Promise<T> {
    const token = opts.token ?? this.credential;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const payload = body !== undefined ? Buffer.from(JSON.stringify(body)) : undefined;
    const what = `${method} ${path}`;
    return new Promise<T>((resolve, reject) => {
      const signal = opts.signal;
      if (signal?.aborted) return reject(signal.reason);
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const req = this.transport.request(
        this.server + path,
        {
          method,
          agent: this.agent,
          headers: {
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', () => {}); // reported by 'close' below
          res.on('close', () => {
            if (!res.complete) return finish(() => reject(new NetworkError(`${what}: the connection closed before the answer was complete`)));
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) return finish(() => reject(httpError(status, res.statusMessage ?? '', text)));
            try {
              const parsed = JSON.parse(text) as T;
              finish(() => resolve(parsed));
            } catch (err) {
              finish(() => reject(new NetworkError(`${what}: unreadable response (${(err as Error).message})`, { cause: err })));
            }
          });
        },
      );
      const onAbort = () => {
        finish(() => reject(signal!.reason));
        req.destroy();
      };
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              finish(() => reject(new NetworkError(`${what}: no answer within ${timeoutMs}ms`)));
              req.destroy();
            }, timeoutMs)
          : undefined;
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err: Error & { code?: string }) =>
        finish(() => {
          // A kept-alive socket the server closed just as it was reused: the request never
          // reached the server, so it is sent once more on a fresh connection.
          if (req.reusedSocket && !retried && (err.code === 'ECONNRESET' || err.code === 'EPIPE') && !signal?.aborted)
            return void this.json<T>(method, path, body, opts, true).then(resolve, reject);
          reject(new NetworkError(`${what}: ${err.code ?? err.message}`, { cause: err }));
        }),
      );
      req.end(payload);
    });
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
  let text = '';
  try {
    text = await res.text();
  } catch {
    // body unreadable: the status says enough
  }
  return httpError(res.status, res.statusText, text);
}

/** The server's `{error: {code, message}}` body, or its text, or the status line. */
function httpError(status: number, statusText: string, text: string): HttpError {
  try {
    const j = JSON.parse(text);
    return new HttpError(status, j?.error?.message ?? statusText, j?.error?.code);
  } catch {
    return new HttpError(status, text ? text.slice(0, 200) : statusText);
  }
}
