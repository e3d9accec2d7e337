/*
 * Runs the real `runyard` CLI (bin/runyard.js, the compiled code) as a child process, and a
 * minimal runner that speaks the runner protocol over HTTP so that jobs can be driven to an end
 * without the real agent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generateRunnerKeys } from '../../src/lib/sealed.js';
import type { TestServer } from './server.js';

const BIN = resolve(import.meta.dirname, '../../bin/runyard.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** --server (omitted when null) */
  server?: string | null;
  /** --token (omitted when null) */
  token?: string | null;
  /** Working directory; default: an empty one, so no ./.runyard is found by accident. */
  cwd?: string;
  /** Extra environment; RUNYARD_* and HOME of the test process are never passed on. */
  env?: Record<string, string>;
  stdin?: string;
  timeoutMs?: number;
}

export interface RunningCli {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  done: Promise<CliResult>;
}

let scratch: string | undefined;
/** An empty directory under this test process's scratch dir (made on first use). */
function emptyDir(name: string): string {
  scratch ??= mkdtempSync(join(tmpdir(), 'runyard-cli-'));
  const d = join(scratch, name);
  mkdirSync(d, { recursive: true });
  return d;
}

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RUNYARD_')) env[k] = v;
  // an empty home, so a ~/.runyard of the machine running the tests is never used
  env.HOME = emptyDir('home');
  env.NO_COLOR = '1';
  return { ...env, ...extra };
}

const live = new Set<ChildProcess>();

/** Kills CLI processes still running (a test that failed half-way leaves them behind) and removes the scratch dirs. */
export function cleanupClis(): void {
  for (const p of live) p.kill('SIGKILL');
  live.clear();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}

/** Starts the CLI; `done` resolves when it exits (it is killed after `timeoutMs`). */
export function spawnCli(args: string[], opts: CliOptions = {}): RunningCli {
  const global: string[] = [];
  if (opts.server) global.push('--server', opts.server);
  if (opts.token) global.push('--token', opts.token);
  const proc = spawn(process.execPath, [BIN, ...global, ...args], {
    cwd: opts.cwd ?? emptyDir('cwd'),
    env: childEnv(opts.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  live.add(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  proc.stdin!.end(opts.stdin ?? '');
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const done = new Promise<CliResult>((ok, fail) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      fail(new Error(`runyard ${args.join(' ')} did not exit within ${timeoutMs}ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    proc.on('error', fail);
    proc.on('close', (code) => {
      live.delete(proc);
      clearTimeout(timer);
      ok({ code, stdout, stderr });
    });
  });
  // A test that fails before awaiting `done` must not turn the timeout into an unhandled rejection.
  done.catch(() => {});
  return { proc, stdout: () => stdout, stderr: () => stderr, done };
}

export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return spawnCli(args, opts).done;
}

/** A CLI bound to one test server with the admin token. */
export function cliFor(t: TestServer) {
  return (args: string[], opts: CliOptions = {}) => runCli(args, { server: t.url, token: t.token, ...opts });
}

/** What a claim hands a runner (the fields these tests use). */
export interface ClaimedJob {
  id: number;
  attempt: number;
  pool: string;
  commands: string[];
  env: Record<string, string>;
}

export type LogStream = 'o' | 'e' | 's';

/**
 * A runner reduced to the protocol calls: register with a registration token, claim, start,
 * post logs, post the result. Every call asserts the server accepted it.
 */
export class FakeRunner {
  private constructor(
    private t: TestServer,
    readonly id: string,
    readonly name: string,
    readonly credential: string,
  ) {}

  static async register(t: TestServer, pool: string, name = `fake-${randomUUID().slice(0, 6)}`): Promise<FakeRunner> {
    const tok = await t.api('POST', '/api/v1/tokens', { pool, description: `test runner ${name}` });
    if (tok.status !== 201) throw new Error(`token create failed: ${tok.status} ${JSON.stringify(tok.body)}`);
    return FakeRunner.registerWith(t, tok.body.secret, name);
  }

  /** Registers with a given registration token; a refusal throws an error carrying `status`. */
  static async registerWith(t: TestServer, registrationToken: string, name = `fake-${randomUUID().slice(0, 6)}`): Promise<FakeRunner> {
    const id = randomUUID();
    const r = await t.api('POST', '/api/v1/runners/register', { id, name, version: 'test', publicKey: generateRunnerKeys().publicKey }, { token: registrationToken });
    if (r.status !== 201) throw Object.assign(new Error(`register failed: ${r.status} ${JSON.stringify(r.body)}`), { status: r.status });
    return new FakeRunner(t, id, name, r.body.credential);
  }

  private async call(path: string, body: unknown): Promise<any> {
    const r = await this.t.api('POST', path, body, { token: this.credential });
    if (r.status >= 300) throw new Error(`POST ${path} failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** Long-polls until one job is claimed (or fails after `timeoutMs`). */
  async claimOne(timeoutMs = 10_000): Promise<ClaimedJob> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const r = await this.call(`/api/v1/runners/${this.id}/claim`, { max: 1, waitMs: Math.min(5000, Math.max(0, deadline - Date.now())) });
      if (r.jobs.length) return r.jobs[0];
    }
    throw new Error(`runner ${this.name} claimed no job within ${timeoutMs}ms`);
  }

  start(job: ClaimedJob) {
    return this.call(`/api/v1/jobs/${job.id}/start`, { attempt: job.attempt });
  }

  log(job: ClaimedJob, seq: number, lines: [LogStream, string][]) {
    return this.call(`/api/v1/jobs/${job.id}/logs`, { attempt: job.attempt, seq, lines: lines.map(([s, m]) => ({ t: Date.now(), s, m })) });
  }

  result(job: ClaimedJob, exitCode: number | null, extra: { outcome?: 'cancelled' | 'timed_out'; error?: string } = {}) {
    return this.call(`/api/v1/jobs/${job.id}/result`, { attempt: job.attempt, exitCode, ...extra });
  }
}

/**
 * An HTTP proxy in front of `target` that cuts the first log stream (`logs?follow=1`) right
 * after it has passed on a `log` event: the CLI must reconnect and resume. Records every URL.
 */
export async function startDroppingProxy(target: string): Promise<{ url: string; urls: string[]; close: () => Promise<void> }> {
  const urls: string[] = [];
  let follows = 0;
  const server = http.createServer((req, res) => {
    urls.push(req.url ?? '');
    const cut = (req.url ?? '').includes('follow=1') && follows++ === 0;
    const up = http.request(target + req.url, { method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      res.flushHeaders();
      upRes.on('data', (chunk: Buffer) => {
        if (!cut || !chunk.toString().includes('event: log')) return void res.write(chunk);
        // drop the connection once the event has reached the client
        res.write(chunk, () => {
          upRes.destroy();
          res.socket?.destroy();
        });
      });
      upRes.on('end', () => res.end());
      upRes.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    urls,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

/** A loopback port nothing listens on. */
export async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}
