/*
 * A fake GitHub on loopback for the GitHub job source tests: the REST endpoints runyard calls
 * (installation tokens with real RS256 JWT checks, generate-jitconfig, runners, runs and jobs)
 * with GitHub's shapes and rate-limit headers, webhooks it signs and sends like GitHub, and a
 * tiny runner protocol (/_runner/*) that the Actions runner stand-in speaks in place of GitHub's
 * broker. Failures and rate limits can be injected per route.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createPublicKey, createVerify, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { sign } from '../../src/github/signature.js';

export interface FakeRunner {
  id: number;
  name: string;
  /** owner/name for a repository runner, org:<login> for an organisation runner */
  repo: string;
  labels: string[];
  status: 'online' | 'offline';
  busy: boolean;
  token: string;
  jobId: number | null;
}
export interface FakeJob {
  id: number;
  runId: number;
  repo: string;
  labels: string[];
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: string | null;
  runnerName: string | null;
  runnerId: number | null;
}
export interface Failure {
  method?: string;
  path: RegExp;
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
  times: number;
}

export class FakeGithub {
  url = '';
  readonly runners = new Map<number, FakeRunner>();
  readonly jobs = new Map<number, FakeJob>();
  readonly requests: { method: string; path: string; at: number; status: number }[] = [];
  readonly failures: Failure[] = [];
  readonly deliveries: { id: string; action: string; jobId: number; status: number }[] = [];
  tokensIssued = 0;
  /** A personal access token the fake accepts besides installation tokens. */
  pat: string | undefined;
  /** Lifetime of the installation tokens it issues. */
  tokenTtlMs = 3_600_000;
  readonly authorizations: string[] = [];
  webhook: { url: string; secret: string } | undefined;
  private nextId = 1000;
  private tokens = new Map<string, number>(); // installation token -> expiry
  private publicKey: KeyObject;
  private server = createServer((req, res) => void this.handle(req, res));

  constructor(opts: { publicKeyPem: string; appId: string; installationId: number }, private appId = opts.appId, readonly installationId = opts.installationId) {
    this.publicKey = createPublicKey(opts.publicKeyPem);
  }

  async start(): Promise<this> {
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close() {
    this.server.closeAllConnections();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }

  fail(f: Omit<Failure, 'times'> & { times?: number }) {
    this.failures.push({ times: 1, ...f });
  }

  /** A new queued workflow job (GitHub side); deliver it with `send('queued', job)`. */
  queueJob(repo: string, labels: string[]): FakeJob {
    const job: FakeJob = { id: this.nextId++, runId: this.nextId++, repo, labels, status: 'queued', conclusion: null, runnerName: null, runnerId: null };
    this.jobs.set(job.id, job);
    return job;
  }

  payload(action: string, job: FakeJob) {
    const [owner, name] = job.repo.split('/');
    return {
      action,
      workflow_job: {
        id: job.id,
        run_id: job.runId,
        run_url: `${this.url}/repos/${job.repo}/actions/runs/${job.runId}`,
        name: 'build',
        status: job.status,
        conclusion: job.conclusion,
        labels: job.labels,
        runner_id: job.runnerId,
        runner_name: job.runnerName,
        runner_group_id: job.runnerId ? 1 : null,
        runner_group_name: job.runnerId ? 'Default' : null,
        workflow_name: 'CI',
        head_branch: 'main',
      },
      repository: { id: 1, name, full_name: job.repo, owner: { login: owner, type: 'Organization' } },
      organization: { login: owner },
      installation: { id: this.installationId },
      sender: { login: 'octocat' },
    };
  }

  /** Sends a signed webhook as GitHub does; `delivery`/`signature`/`event` override the headers. */
  async send(action: string, job: FakeJob, o: { delivery?: string; signature?: string | null; event?: string; body?: string } = {}) {
    const body = o.body ?? JSON.stringify(this.payload(action, job));
    const delivery = o.delivery ?? randomUUID();
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-github-event': o.event ?? 'workflow_job', 'x-github-delivery': delivery, 'user-agent': 'GitHub-Hookshot/fake' };
    const signature = o.signature === undefined ? sign(this.webhook!.secret, body) : o.signature;
    if (signature !== null) headers['x-hub-signature-256'] = signature;
    const res = await fetch(this.webhook!.url, { method: 'POST', headers, body });
    const parsed = await res.json().catch(() => null);
    this.deliveries.push({ id: delivery, action, jobId: job.id, status: res.status });
    return { status: res.status, body: parsed as any, delivery };
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const body = raw ? JSON.parse(raw) : undefined;
    const u = new URL(req.url!, this.url);
    const method = req.method!;
    const reset = Math.floor(Date.now() / 1000) + 3600;
    const reply = (status: number, data?: unknown, headers: Record<string, string> = {}) => {
      this.requests.push({ method, path: u.pathname + u.search, at: Date.now(), status });
      res.writeHead(status, { 'content-type': 'application/json', 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '4999', 'x-ratelimit-reset': String(reset), 'x-ratelimit-resource': 'core', ...headers });
      res.end(data === undefined ? '' : JSON.stringify(data));
    };
    try {
      if (u.pathname.startsWith('/_runner/')) return await this.runnerProtocol(u.pathname, req, body, reply);
      const f = this.failures.find((f) => f.times > 0 && (!f.method || f.method === method) && f.path.test(u.pathname));
      if (f) {
        f.times--;
        return reply(f.status, f.body ?? { message: `injected ${f.status}`, documentation_url: 'https://docs.github.com/rest' }, f.headers);
      }
      const auth = req.headers.authorization ?? '';
      let m: RegExpExecArray | null;
      if ((m = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(u.pathname)) && method === 'POST') {
        if (!this.checkJwt(auth)) return reply(401, { message: 'A JSON web token could not be decoded' });
        if (Number(m[1]) !== this.installationId) return reply(404, { message: 'Not Found' });
        const token = `ghs_${randomBytes(18).toString('hex')}`;
        const expiresAt = Date.now() + this.tokenTtlMs;
        this.tokens.set(token, expiresAt);
        this.tokensIssued++;
        return reply(201, { token, expires_at: new Date(expiresAt).toISOString(), permissions: { administration: 'write', actions: 'read' }, repository_selection: 'all' });
      }
      if ((m = /^\/repos\/([^/]+\/[^/]+)\/installation$/.exec(u.pathname))) {
        if (!this.checkJwt(auth)) return reply(401, { message: 'A JSON web token could not be decoded' });
        return reply(200, { id: this.installationId, app_id: Number(this.appId) });
      }
      const tok = /^(?:Bearer|token) (\w+)$/.exec(auth)?.[1];
      const valid = !!tok && (tok === this.pat || (this.tokens.get(tok) ?? 0) > Date.now());
      if (!valid) return reply(401, { message: 'Bad credentials' });
      this.authorizations.push(tok!);

      if ((m = /^\/(?:repos\/([^/]+\/[^/]+)|orgs\/([^/]+))\/actions\/runners\/generate-jitconfig$/.exec(u.pathname)) && method === 'POST') {
        const repo = m[1] ?? `org:${m[2]}`;
        if (!body?.name || !Array.isArray(body.labels) || body.labels.length < 1 || !Number.isInteger(body.runner_group_id))
          return reply(422, { message: 'Invalid request: name, runner_group_id and labels are required' });
        if ([...this.runners.values()].some((r) => r.name === body.name)) return reply(409, { message: 'Already exists - A runner with the same name already exists.' });
        const id = this.nextId++;
        const token = randomBytes(16).toString('hex');
        const runner: FakeRunner = { id, name: body.name, repo, labels: ['self-hosted', 'Linux', 'X64', ...body.labels], status: 'offline', busy: false, token, jobId: null };
        this.runners.set(id, runner);
        const encoded = Buffer.from(JSON.stringify({ fake: { url: this.url, runnerId: id, name: body.name, token } })).toString('base64');
        return reply(201, { runner: this.runnerJson(runner), encoded_jit_config: encoded });
      }
      if ((m = /^\/(?:repos\/([^/]+\/[^/]+)|orgs\/([^/]+))\/actions\/runners$/.exec(u.pathname)) && method === 'GET') {
        const scope = m[1] ?? `org:${m[2]}`;
        const list = [...this.runners.values()].filter((r) => r.repo === scope);
        return reply(200, { total_count: list.length, runners: list.map((r) => this.runnerJson(r)) });
      }
      if ((m = /^\/(?:repos\/([^/]+\/[^/]+)|orgs\/([^/]+))\/actions\/runners\/(\d+)$/.exec(u.pathname)) && method === 'DELETE') {
        const r = this.runners.get(Number(m[3]));
        if (!r || r.repo !== (m[1] ?? `org:${m[2]}`)) return reply(404, { message: 'Not Found' });
        this.runners.delete(r.id);
        return reply(204);
      }
      if ((m = /^\/repos\/([^/]+\/[^/]+)\/actions\/runs$/.exec(u.pathname)) && method === 'GET') {
        const want = u.searchParams.get('status');
        const runs = new Map<number, FakeJob[]>();
        for (const j of this.jobs.values()) if (j.repo === m[1]) runs.set(j.runId, [...(runs.get(j.runId) ?? []), j]);
        const list = [...runs.entries()]
          .map(([id, js]) => ({ id, status: js.some((j) => j.status === 'queued') ? 'queued' : js.some((j) => j.status === 'in_progress') ? 'in_progress' : 'completed' }))
          .filter((r) => !want || r.status === want)
          .map((r) => ({ ...r, name: 'CI', repository: { full_name: m![1], owner: { login: m![1]!.split('/')[0] } } }));
        return reply(200, { total_count: list.length, workflow_runs: list });
      }
      if ((m = /^\/repos\/([^/]+\/[^/]+)\/actions\/runs\/(\d+)\/jobs$/.exec(u.pathname)) && method === 'GET') {
        const list = [...this.jobs.values()].filter((j) => j.repo === m![1] && j.runId === Number(m![2]));
        return reply(200, {
          total_count: list.length,
          jobs: list.map((j) => ({ id: j.id, run_id: j.runId, status: j.status, conclusion: j.conclusion, labels: j.labels, runner_id: j.runnerId, runner_name: j.runnerName, name: 'build' })),
        });
      }
      return reply(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
    } catch (err) {
      return reply(500, { message: (err as Error).message });
    }
  }

  private runnerJson(r: FakeRunner) {
    return { id: r.id, name: r.name, os: 'Linux', status: r.status, busy: r.busy, runner_group_id: 1, labels: r.labels.map((name, i) => ({ id: i + 1, name, type: i < 3 ? 'read-only' : 'custom' })) };
  }

  /** What GitHub's broker does for a JIT runner: connect, hand it a matching queued job, take its result. */
  private async runnerProtocol(path: string, req: IncomingMessage, body: any, reply: (s: number, d?: unknown) => void) {
    const r = this.runners.get(Number(body?.runnerId));
    if (!r) return reply(404, { message: 'runner not found' });
    if (req.headers.authorization !== `RemoteAuth ${r.token}`) return reply(401, { message: 'bad runner credential' });
    if (path === '/_runner/connect') {
      r.status = 'online';
      return reply(200, { ok: true });
    }
    if (path === '/_runner/acquire') {
      if (r.jobId) return reply(200, { job: { id: r.jobId } });
      const have = new Set(r.labels.map((l) => l.toLowerCase()));
      const job = [...this.jobs.values()].find((j) => j.status === 'queued' && (j.repo === r.repo || r.repo === `org:${j.repo.split('/')[0]}`) && j.labels.every((l) => have.has(l.toLowerCase())));
      if (!job) return reply(200, { job: null });
      job.status = 'in_progress';
      job.runnerName = r.name;
      job.runnerId = r.id;
      r.busy = true;
      r.jobId = job.id;
      await this.send('in_progress', job);
      return reply(200, { job: { id: job.id } });
    }
    if (path === '/_runner/complete') {
      const job = this.jobs.get(Number(body.jobId));
      if (!job) return reply(404, { message: 'job not found' });
      job.status = 'completed';
      job.conclusion = body.conclusion ?? 'success';
      this.runners.delete(r.id); // ephemeral: GitHub removes the runner after its one job
      await this.send('completed', job);
      return reply(200, { ok: true });
    }
    return reply(404, { message: 'Not Found' });
  }

  private checkJwt(auth: string): boolean {
    const m = /^Bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/.exec(auth);
    if (!m) return false;
    const header = JSON.parse(Buffer.from(m[1]!, 'base64url').toString());
    const claims = JSON.parse(Buffer.from(m[2]!, 'base64url').toString());
    if (header.alg !== 'RS256') return false;
    const ok = createVerify('RSA-SHA256').update(`${m[1]}.${m[2]}`).verify(this.publicKey, Buffer.from(m[3]!, 'base64url'));
    const now = Math.floor(Date.now() / 1000);
    return ok && String(claims.iss) === String(this.appId) && claims.exp > now && claims.iat <= now + 60 && claims.exp - claims.iat <= 660;
  }
}
