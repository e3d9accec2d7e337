/** `runyard up` as a real child process (the product as users run it), for memory figures. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ADMIN_TOKEN } from './server.js';
import { HttpClient } from './http.js';
import { readProcStat } from './proc.js';
import { waitFor } from './fleet.js';

const CLI = resolve(import.meta.dirname, '../../bin/runyard.js');

export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as any).port;
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

export class UpProcess {
  child!: ChildProcess;
  url = '';
  output = '';
  http!: HttpClient;
  readonly dataDir: string;

  constructor(private opts: { dbUrl?: string; yaml: string; dataDir?: string; keepDataDir?: boolean }) {
    this.dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'runyard-bench-up-'));
  }

  async start(): Promise<this> {
    const port = await freePort();
    this.url = `http://127.0.0.1:${port}`;
    const config = join(this.dataDir, 'runyard.yaml');
    writeFileSync(config, this.opts.yaml);
    const env: NodeJS.ProcessEnv = { ...process.env, RUNYARD_ADMIN_TOKEN: ADMIN_TOKEN, RUNYARD_SECRET_KEY: 'bench-secret-key-0123456789', RUNYARD_LOG_LEVEL: 'info', NODE_OPTIONS: '' };
    if (this.opts.dbUrl) env.RUNYARD_DATABASE_URL = this.opts.dbUrl;
    else delete env.RUNYARD_DATABASE_URL;
    this.child = spawn(process.execPath, [CLI, 'up', '--config', config, '--port', String(port), '--data-dir', join(this.dataDir, 'data')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d) => (this.output = (this.output + d).slice(-20_000)));
    this.child.stderr!.on('data', (d) => (this.output = (this.output + d).slice(-20_000)));
    this.http = new HttpClient(this.url, ADMIN_TOKEN);
    try {
      await waitFor(`runyard up on ${this.url}`, async () => (await this.http.request('GET', '/healthz').catch(() => undefined))?.status === 200, 60_000, 100);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- server output ---\n${this.output.slice(-3000)}`);
    }
    return this;
  }

  get pid(): number {
    return this.child.pid!;
  }

  rss(): number {
    return readProcStat(this.pid)?.rssBytes ?? NaN;
  }

  async stop(): Promise<void> {
    this.http?.close();
    if (this.child.exitCode === null && !this.child.signalCode) {
      await new Promise<void>((ok) => {
        const t = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
        this.child.once('exit', () => {
          clearTimeout(t);
          ok();
        });
        this.child.kill('SIGTERM');
      });
    }
    if (!this.opts.keepDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
