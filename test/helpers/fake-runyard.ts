/*
 * A small fake runyard control plane on loopback (after buildkite-agent's fake API server): the
 * runner protocol endpoints the agent uses (src/protocol/runner.ts), over real HTTP, with a
 * simple default behaviour and answers a test can script per endpoint. No database: agent tests
 * on it cover what is hard to provoke in a real server (a claim answered after the agent gave up,
 * 409/410/401 on any call, a server that disappears).
 *
 *   const fake = await FakeRunyard.start({ config: { heartbeatIntervalMs: 100 } });
 *   fake.respondOnce('start', { status: 409, body: { error: { code: 'conflict', message: 'claim lost' } } });
 *   fake.enqueue({ commands: ['echo hi'] });           // the next claim gets it
 *   const call = await fake.next('result');            // waits for the request, no polling
 *
 * Defaults: register answers 201 (credential sealed to the runner's key); the control channel
 * sends `hello` and keeps the stream open; heartbeats answer `{state, cancel: [], lost: []}`;
 * claims hand out enqueued jobs, long-polling up to `waitMs`; start, logs, result, offline and
 * deregister answer as the real server does on success. Runner calls need the credential
 * (401 otherwise). Two fakes made with `shareWith` are two servers on one database.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sealTo } from '../../src/lib/sealed.js';
import type { ClaimedJob, ControlEventData, ControlEventName, RunnerConfig } from '../../src/protocol/runner.js';

export type Endpoint = 'register' | 'control' | 'heartbeat' | 'claim' | 'offline' | 'deregister' | 'start' | 'logs' | 'result';

export interface Reply {
  status: number;
  body?: unknown;
}

/** One request the fake received. */
export interface FakeCall {
  endpoint: Endpoint;
  /** The fake it reached (several may share one state). */
  server: string;
  runnerId?: string;
  jobId?: number;
  body: any;
  /** What the fake answered; undefined while it has not (or the client left first). */
  reply?: Reply;
  /** Resolves when the client closed the connection before an answer was sent. */
  readonly gone: Promise<void>;
  /** Whether the client closed the connection before an answer was sent. */
  clientGone: boolean;
}

/** An answer the test scripts: a reply, or undefined for the default behaviour. */
export type Script = (call: FakeCall) => Reply | undefined | Promise<Reply | undefined>;

interface Shared {
  runners: Map<string, { credential: string; publicKey: string; state: string }>;
  queue: ClaimedJob[];
  nextJobId: number;
  /** Parked claims, woken by enqueue(). */
  parked: Set<() => void>;
}

interface Waiter {
  endpoint: Endpoint;
  pred: (c: FakeCall) => boolean;
  resolve: (c: FakeCall) => void;
}

const DEFAULT_CONFIG: RunnerConfig = {
  pool: 'fake',
  maxJobsPerRunner: 1,
  ephemeral: false,
  heartbeatIntervalMs: 200,
  pingIntervalMs: 1000,
  idleTimeoutMs: 60_000,
  jobTimeoutMs: 60_000,
  setup: [],
  env: {},
  distribution: null,
  claimSeq: true,
};

export class FakeRunyard {
  readonly calls: FakeCall[] = [];
  /** The registration answer's config; tests may change it before the agent registers. */
  config: RunnerConfig;
  private readonly server: Server;
  private readonly shared: Shared;
  private readonly scripts = new Map<Endpoint, Script>();
  private readonly onceScripts = new Map<Endpoint, Script[]>();
  private readonly waiters = new Set<Waiter>();
  private readonly streams = new Set<ServerResponse>();
  url = '';

  private constructor(config: Partial<RunnerConfig>, shared?: Shared) {
    this.config = { ...DEFAULT_CONFIG, ...config };
    this.shared = shared ?? { runners: new Map(), queue: [], nextJobId: 1, parked: new Set() };
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  /** Starts a fake on 127.0.0.1 (a free port). `shareWith`: another server on the same state. */
  static async start(opts: { config?: Partial<RunnerConfig>; shareWith?: FakeRunyard } = {}): Promise<FakeRunyard> {
    const fake = new FakeRunyard(opts.config ?? {}, opts.shareWith?.shared);
    fake.server.listen(0, '127.0.0.1');
    await once(fake.server, 'listening');
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  /** Every answer of `endpoint` from now on comes from `script` (undefined: back to the default). */
  respond(endpoint: Endpoint, script: Script | undefined): void {
    if (script) this.scripts.set(endpoint, script);
    else this.scripts.delete(endpoint);
  }

  /** The next request to `endpoint` gets this answer (queued after earlier ones). */
  respondOnce(endpoint: Endpoint, reply: Reply | Script): void {
    const list = this.onceScripts.get(endpoint) ?? [];
    list.push(typeof reply === 'function' ? reply : () => reply);
    this.onceScripts.set(endpoint, list);
  }

  /** A job for the next claim; wakes a parked claim and tells open control channels. */
  enqueue(job: Partial<ClaimedJob> = {}): ClaimedJob {
    const full: ClaimedJob = { id: this.shared.nextJobId++, attempt: 1, pool: this.config.pool, commands: ['true'], payload: null, env: {}, secrets: null, timeoutMs: 60_000, ...job };
    this.shared.queue.push(full);
    for (const wake of [...this.shared.parked]) wake();
    this.control('job', { pool: full.pool });
    return full;
  }

  /** Sends a control event to every open channel of this fake. */
  control<E extends ControlEventName>(event: E, data: ControlEventData[E]): void {
    for (const res of this.streams) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** Cuts every open control channel (the agent reconnects). */
  dropControl(): void {
    for (const res of this.streams) res.destroy();
    this.streams.clear();
  }

  /** The first call to `endpoint` matching `pred`, already made or still to come. */
  waitFor(endpoint: Endpoint, pred: (c: FakeCall) => boolean = () => true): Promise<FakeCall> {
    const seen = this.calls.find((c) => c.endpoint === endpoint && pred(c));
    return seen ? Promise.resolve(seen) : this.next(endpoint, pred);
  }

  /** The next call to `endpoint` matching `pred` from now on. */
  next(endpoint: Endpoint, pred: (c: FakeCall) => boolean = () => true): Promise<FakeCall> {
    return new Promise((resolve) => this.waiters.add({ endpoint, pred, resolve }));
  }

  /** Calls made to `endpoint` so far. */
  callsTo(endpoint: Endpoint): FakeCall[] {
    return this.calls.filter((c) => c.endpoint === endpoint);
  }

  /** Stops answering: the listener and every connection close (a server that died). */
  async close(): Promise<void> {
    for (const wake of [...this.shared.parked]) wake();
    this.dropControl();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const route = matchRoute(req.method ?? 'GET', url.pathname);
    if (!route) return send(res, { status: 404, body: error('not_found', `no route ${req.method} ${url.pathname}`) });
    let text = '';
    for await (const chunk of req) text += chunk;
    let gone!: () => void;
    const call: FakeCall = {
      endpoint: route.endpoint,
      server: this.url,
      ...(route.runnerId ? { runnerId: route.runnerId } : {}),
      ...(route.jobId ? { jobId: route.jobId } : {}),
      body: text ? JSON.parse(text) : undefined,
      gone: new Promise<void>((r) => (gone = r)),
      clientGone: false,
    };
    res.on('close', () => {
      if (res.writableFinished || call.reply) return;
      call.clientGone = true;
      gone();
    });
    this.calls.push(call);
    this.notify(call);
    const script = this.onceScripts.get(call.endpoint)?.shift() ?? this.scripts.get(call.endpoint);
    const scripted = script ? await script(call) : undefined;
    const reply = scripted ?? (await this.default(call, req, res));
    if (!reply || res.destroyed) return; // a stream, or the client left
    call.reply = reply;
    send(res, reply);
    this.notify(call); // waiters may be waiting for the answer
  }

  private notify(call: FakeCall): void {
    for (const w of [...this.waiters]) {
      if (w.endpoint === call.endpoint && w.pred(call)) {
        this.waiters.delete(w);
        w.resolve(call);
      }
    }
  }

  /** What the real server answers when all goes well. */
  private async default(call: FakeCall, req: IncomingMessage, res: ServerResponse): Promise<Reply | undefined> {
    const { runners } = this.shared;
    if (call.endpoint === 'register') {
      const body = call.body as { id: string; publicKey: string; name: string };
      const known = runners.get(body.id);
      if (known?.state === 'terminated') return { status: 410, body: error('gone', `runner ${body.id} was terminated`) };
      if (known && known.publicKey !== body.publicKey) return { status: 409, body: error('conflict', `runner ${body.id} is registered with another key`) };
      const credential = `ryd_run_fake_${body.id}_${Math.random().toString(36).slice(2)}`;
      runners.set(body.id, { credential, publicKey: body.publicKey, state: 'idle' });
      return {
        status: 201,
        body: { runner: { id: body.id, name: body.name, pool: this.config.pool, state: 'idle' }, sealedCredential: sealTo(body.publicKey, { credential }), config: { ...this.config, servers: this.config.servers ?? [] } },
      };
    }
    // Runner calls: the credential of some registered runner; runner endpoints its own.
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const owner = [...runners.entries()].find(([, r]) => r.credential === token);
    if (!owner || (call.runnerId && owner[0] !== call.runnerId)) return { status: 401, body: error('unauthorized', 'invalid credential') };
    if (owner[1].state === 'terminated') return { status: 410, body: error('gone', `runner ${owner[0]} was terminated`) };
    switch (call.endpoint) {
      case 'control':
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write(`event: hello\ndata: ${JSON.stringify({ state: owner[1].state })}\n\n`);
        this.streams.add(res);
        res.on('close', () => this.streams.delete(res));
        return undefined;
      case 'heartbeat':
        return { status: 200, body: { state: owner[1].state, cancel: [], lost: [], servers: this.config.servers ?? [] } };
      case 'claim':
        return this.claim(call);
      case 'offline':
        owner[1].state = 'offline';
        return { status: 200, body: { ok: true } };
      case 'deregister':
        owner[1].state = 'terminated';
        return { status: 200, body: { ok: true } };
      case 'start':
        return { status: 200, body: { state: 'running', cancel: false } };
      case 'logs':
        return { status: 200, body: { cancel: false } };
      case 'result':
        return { status: 200, body: { state: call.body?.exitCode === 0 ? 'succeeded' : 'failed' } };
      default:
        return { status: 404, body: error('not_found', call.endpoint) };
    }
  }

  /** Hands out queued jobs; parks until one is enqueued, the wait is over or the client leaves. */
  private async claim(call: FakeCall): Promise<Reply | undefined> {
    const max = call.body?.max ?? 1;
    const deadline = Date.now() + (call.body?.waitMs ?? 0);
    for (;;) {
      if (call.clientGone || !this.server.listening) return undefined;
      const jobs = this.shared.queue.splice(0, max);
      if (jobs.length) return { status: 200, body: { jobs } };
      const left = deadline - Date.now();
      if (left <= 0) return { status: 200, body: { jobs: [] } };
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.shared.parked.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.shared.parked.add(wake);
        void call.gone.then(wake);
      });
    }
  }
}

/** The real server's error body. */
export function error(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

function send(res: ServerResponse, reply: Reply): void {
  const text = reply.body === undefined ? '' : JSON.stringify(reply.body);
  res.writeHead(reply.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const UUID = '[0-9a-fA-F-]{36}';

function matchRoute(method: string, path: string): { endpoint: Endpoint; runnerId?: string; jobId?: number } | undefined {
  if (method === 'POST' && path === '/api/v1/runners/register') return { endpoint: 'register' };
  let m = new RegExp(`^/api/v1/runners/(${UUID})/(control|heartbeat|claim|offline|deregister)$`).exec(path);
  if (m) {
    const endpoint = m[2] as Endpoint;
    if ((endpoint === 'control') !== (method === 'GET')) return undefined;
    return { endpoint, runnerId: m[1]!.toLowerCase() };
  }
  m = /^\/api\/v1\/jobs\/(\d+)\/(start|logs|result)$/.exec(path);
  if (m && method === 'POST') return { endpoint: m[2] as Endpoint, jobId: Number(m[1]) };
  return undefined;
}
