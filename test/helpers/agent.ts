/**
 * Helpers for agent tests: real `runyard agent` processes (built dist/), a pausable TCP proxy to
 * simulate a network that goes silent, a minimal zip writer for hostile archives, and job/log
 * helpers over the admin API.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';
import { waitFor, type TestServer } from './server.js';

const BIN = resolve(import.meta.dirname, '../../bin/runyard.js');
const live = new Set<AgentProcess>();
const tempDirs: string[] = [];

export interface AgentLog {
  level: number;
  msg: string;
  [k: string]: any;
}

export interface StartAgentOptions {
  server: string;
  token: string;
  stateDir?: string;
  workDir?: string;
  gracePeriod?: string;
  health?: boolean;
  args?: string[];
  env?: Record<string, string>;
}

/** A `runyard agent` child process with its parsed JSON log lines. */
export class AgentProcess {
  readonly child: ChildProcess;
  readonly stateDir: string;
  readonly workDir: string;
  readonly logs: AgentLog[] = [];
  stderr = '';
  stdout = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(opts: StartAgentOptions) {
    const base = mkdtempSync(join(tmpdir(), 'runyard-agent-'));
    tempDirs.push(base);
    this.stateDir = opts.stateDir ?? join(base, 'state');
    this.workDir = opts.workDir ?? join(base, 'work');
    const args = [BIN, 'agent', '--server', opts.server, '--state-dir', this.stateDir, '--work-dir', this.workDir, '--grace-period', opts.gracePeriod ?? '1s'];
    if (opts.health) args.push('--health-port', '0', '--health-host', '127.0.0.1');
    args.push(...(opts.args ?? []));
    // The token goes in the environment, as the help recommends (and so tests can check it stays there).
    this.child = spawn(process.execPath, args, {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, RUNYARD_REGISTRATION_TOKEN: opts.token, RUNYARD_LOG_LEVEL: 'info', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let partial = '';
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      this.stderr += s;
      const lines = (partial + s).split('\n');
      partial = lines.pop()!;
      for (const l of lines) {
        try {
          this.logs.push(JSON.parse(l));
        } catch {
          // plain text (the final error line)
        }
      }
    });
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => (this.stdout += s));
    this.exited = new Promise((r) => this.child.once('exit', (code, signal) => r({ code, signal })));
    live.add(this);
    void this.exited.then(() => live.delete(this));
  }

  /** Waits for a log line with this message (and matching `pred`). */
  waitForLog(msg: string, pred: (l: AgentLog) => boolean = () => true, timeoutMs = 10_000): Promise<AgentLog> {
    return waitFor(`agent log "${msg}"\n--- agent stderr ---\n${this.stderr.slice(-3000)}`, () => this.logs.find((l) => l.msg === msg && pred(l)), timeoutMs);
  }

  count(msg: string): number {
    return this.logs.filter((l) => l.msg === msg).length;
  }

  async runnerId(): Promise<string> {
    return (await this.waitForLog('registered')).runnerId;
  }

  async healthPort(): Promise<number> {
    return (await this.waitForLog('health server listening')).port;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(sig);
  }

  async exitCode(timeoutMs = 15_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      this.exited,
      new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error(`agent did not exit within ${timeoutMs}ms\n${this.stderr.slice(-3000)}`)), timeoutMs))),
    ]);
    clearTimeout(timer);
    return r.code;
  }
}

export function startAgent(opts: StartAgentOptions): AgentProcess {
  return new AgentProcess(opts);
}

/** Kills every agent a test left running, their jobs' process groups, and removes their dirs. */
export async function killAllAgents(): Promise<void> {
  const all = [...live];
  for (const a of all) a.signal('SIGKILL');
  await Promise.all(all.map((a) => a.exited));
  for (const dir of tempDirs.splice(0)) {
    killLeftoverJobs(join(dir, 'work'));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Kills the process groups recorded in a work dir's job dirs (what a SIGKILLed agent left). */
export function killLeftoverJobs(workDir: string): void {
  if (!existsSync(workDir)) return;
  for (const name of readdirSync(workDir)) {
    try {
      process.kill(-Number(readFileSync(join(workDir, name, 'pgid'), 'utf8')), 'SIGKILL');
    } catch {
      // no group recorded, or already gone
    }
  }
}

/**
 * Applies a pool and returns a fresh registration token for it. maxRunners 0: no scheduler ever
 * starts runners for a test pool, so the agents a test starts are the only ones.
 */
export async function poolWithToken(t: TestServer, pool: Record<string, unknown>): Promise<string> {
  const p = await t.api('POST', '/api/v1/pools', { maxRunners: 0, ...pool });
  assert.equal(p.status, 200, JSON.stringify(p.body));
  const tok = await t.api('POST', '/api/v1/tokens', { pool: pool.name });
  assert.equal(tok.status, 201, JSON.stringify(tok.body));
  return tok.body.secret;
}

export async function submit(t: TestServer, spec: Record<string, unknown>): Promise<any> {
  const r = await t.api('POST', '/api/v1/jobs', spec);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.job;
}

export async function getJob(t: TestServer, id: number): Promise<any> {
  const r = await t.api('GET', `/api/v1/jobs/${id}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.job;
}

const FINAL = ['succeeded', 'failed', 'cancelled', 'timed_out'];

/** Waits until the job is in one of `states` (default: any final state). */
export async function waitForJob(t: TestServer, id: number, states: string[] = FINAL, timeoutMs = 15_000): Promise<any> {
  let last: any;
  try {
    return await waitFor(
      `job ${id} to be ${states.join('|')}`,
      async () => {
        last = await getJob(t, id);
        return states.includes(last.state) ? last : undefined;
      },
      timeoutMs,
      50,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message} (last seen: ${last?.state}, error: ${last?.error})`);
  }
}

/** Every log line of a job, paging through GET /jobs/{id}/logs?after=N. */
export async function allLogs(t: TestServer, id: number): Promise<{ seq: number; t: number; s: string; m: string }[]> {
  const lines: any[] = [];
  let after = 0;
  for (;;) {
    const r = await t.api('GET', `/api/v1/jobs/${id}/logs?after=${after}&limit=50`);
    assert.equal(r.status, 200);
    lines.push(...r.body.lines);
    if (r.body.nextAfter === after) return lines;
    after = r.body.nextAfter;
  }
}

/** Whether a process exists and is not a zombie (zombies are dead, just not yet reaped). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * A TCP proxy on loopback in front of the server. pause() stops moving bytes both ways on every
 * connection, old and new, like a network that silently drops packets; resume() lets them flow.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private paused = false;
  port = 0;

  constructor(private readonly targetPort: number) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async listen(): Promise<this> {
    this.server = createServer((client) => {
      const upstream = connect(this.targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
        if (this.paused) s.pause();
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  pause(): void {
    this.paused = true;
    for (const s of this.sockets) s.pause();
  }

  resume(): void {
    this.paused = false;
    for (const s of this.sockets) s.resume();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}

export interface ZipEntry {
  name: string;
  data?: string | Buffer;
  symlinkTo?: string;
  /** permission bits of a file (setuid and the like included) */
  mode?: number;
  /** deflate the data (a stored entry otherwise) */
  deflate?: boolean;
}

/** A stored (uncompressed) zip with Unix modes, enough to build hostile archives in tests. */
export function makeZip(entries: ZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const plain = Buffer.from(e.symlinkTo ?? e.data ?? '');
    const data = e.deflate ? deflateRawSync(plain) : plain;
    const mode = e.symlinkTo !== undefined ? 0o120777 : e.name.endsWith('/') ? 0o040755 : 0o100000 | (e.mode ?? 0o644);
    const crc = crc32(plain);
    const method = e.deflate ? 8 : 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(plain.length, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix: external attributes carry the mode
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(plain.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((mode << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, data);
    centrals.push(central, name);
    offset += local.length + name.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** One ustar entry, written by hand so tests can build archives no tar tool would. */
export function tarEntry(name: string, opts: { type?: '0' | '1' | '2' | '3' | '5'; link?: string; data?: string | Buffer; mode?: number } = {}): Buffer {
  const data = Buffer.from(opts.data ?? '');
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write((opts.mode ?? 0o644).toString(8).padStart(7, '0') + '\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write(opts.type ?? '0', 156);
  if (opts.link) h.write(opts.link, 157, 100);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return Buffer.concat([h, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}
export const tarOf = (...entries: Buffer[]) => Buffer.concat([...entries, Buffer.alloc(1024)]);

/** Pushes an archive as an artifact (admin) and returns its digest. */
export async function pushArtifact(t: TestServer, name: string, body: Buffer): Promise<string> {
  const res = await fetch(`${t.url}/api/v1/artifacts?name=${encodeURIComponent(name)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(body),
  });
  const j: any = await res.json();
  assert.equal(res.status, 201, JSON.stringify(j));
  return j.artifact.digest;
}

