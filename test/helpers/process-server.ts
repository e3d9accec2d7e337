import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_TOKEN, waitFor } from './server.js';

export const CLI = join(import.meta.dirname, '../../bin/runyard.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as any).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** `runyard up` as a real child process (so it can be killed with SIGKILL), on PostgreSQL. */
export class ServerProcess {
  child: ChildProcess | undefined;
  output = '';
  readonly url: string;

  constructor(readonly opts: { dbUrl: string; dataDir: string; port: number; yaml: string; env?: Record<string, string> }) {
    this.url = `http://127.0.0.1:${opts.port}`;
  }

  async start(): Promise<void> {
    const config = join(this.opts.dataDir, `runyard-${this.opts.port}.yaml`);
    writeFileSync(config, this.opts.yaml);
    this.child = spawn(process.execPath, [CLI, 'up', '--config', config, '--port', String(this.opts.port), '--data-dir', this.opts.dataDir], {
      env: {
        ...process.env,
        RUNYARD_DATABASE_URL: this.opts.dbUrl,
        RUNYARD_ADMIN_TOKEN: ADMIN_TOKEN,
        RUNYARD_SECRET_KEY: 'test-secret-key-0123456789',
        RUNYARD_LOG_LEVEL: 'info',
        ...this.opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d) => (this.output += d));
    this.child.stderr!.on('data', (d) => (this.output += d));
    // a server that died at start-up says why
    this.child.once('exit', (code) => {
      if (code) this.output += `\n[exited with code ${code}]`;
    });
    try {
      await waitFor(`server on port ${this.opts.port}`, async () => (await fetch(this.url + '/healthz').catch(() => undefined))?.ok, 60_000, 50);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- server output ---\n${this.output.slice(-3000)}`);
    }
  }

  kill9(): Promise<void> {
    const child = this.child!;
    return new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }

  async api(method: string, path: string, body?: unknown): Promise<any> {
    const res = await fetch(this.url + path, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  }
}

/** Pids of live `runyard agent` processes started for runners under `dataDir`. */
export function agentPids(dataDir: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc').filter((x: string) => /^\d+$/.test(x))) {
    try {
      const env = readFileSync(`/proc/${d}/environ`, 'utf8');
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.includes('agent') && env.includes(`RUNYARD_STATE_DIR=${dataDir}`)) pids.push(Number(d));
    } catch {
      // process gone
    }
  }
  return pids;
}
