/*
 * A PostgreSQL server of the test's own: initdb + pg_ctl on a private cluster in a temp dir, on
 * a free port, so a test may stop and restart it without touching the machine's shared server
 * on 5432. As root (CI), the cluster belongs to the `postgres` user: initdb refuses to run as root.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './process-server.js';
import { waitFor } from './server.js';

const run = promisify(execFile);

/** The newest /usr/lib/postgresql/<v>/bin that has initdb, or undefined. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

export class PrivatePostgres {
  readonly dir: string;
  readonly dataDir: string;
  port = 0;
  private asRoot = userInfo().uid === 0;

  constructor(private bin: string) {
    this.dir = mkdtempSync(join(tmpdir(), 'runyard-pg-'));
    this.dataDir = join(this.dir, 'data');
    if (this.asRoot) {
      const { uid, gid } = userIds('postgres');
      chownSync(this.dir, uid, gid);
    }
  }

  /** postgres://… of the cluster's `postgres` database. */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private async tool(name: string, args: string[]) {
    const cmd = join(this.bin, name);
    const [file, argv] = this.asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
    return run(file, argv, { cwd: this.dir, timeout: 120_000 });
  }

  async init(): Promise<this> {
    // A test process that dies (an uncaught error, a timeout) must not leave its server running.
    process.once('exit', this.killOnExit);
    this.port = await freePort();
    await this.tool('initdb', ['-D', this.dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale', 'C']);
    await this.start();
    return this;
  }

  async start(): Promise<void> {
    const opts = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`;
    await this.tool('pg_ctl', ['-D', this.dataDir, '-l', join(this.dir, 'log'), '-o', opts, '-w', '-t', '60', 'start']);
    await waitFor('private PostgreSQL to answer', () => this.answers(), 30_000, 100);
  }

  /**
   * Fast shutdown: every session is terminated (57P01), as in a restart. Immediate: the server
   * dies without a word (connections reset), as in a crash; the next start replays the WAL.
   */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.tool('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', '-t', '60', 'stop']);
  }

  async answers(): Promise<boolean> {
    const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 2000 });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.query('select 1');
      return true;
    } catch {
      return false;
    } finally {
      await c.end().catch(() => {});
    }
  }

  /** A fresh database on this cluster; its URL. */
  async createDatabase(name: string): Promise<string> {
    const c = new pg.Client({ connectionString: this.url });
    await c.connect();
    await c.query(`create database ${name}`);
    await c.end();
    return this.url.replace(/\/[^/]*$/, `/${name}`);
  }

  async destroy(): Promise<void> {
    process.off('exit', this.killOnExit);
    await this.stop().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }

  private killOnExit = () => {
    const cmd = join(this.bin, 'pg_ctl');
    const args = ['-D', this.dataDir, '-m', 'immediate', 'stop'];
    spawnSync(this.asRoot ? 'runuser' : cmd, this.asRoot ? ['-u', 'postgres', '--', cmd, ...args] : args, { stdio: 'ignore', timeout: 10_000 });
    rmSync(this.dir, { recursive: true, force: true });
  };
}

/** uid and gid of a local user, from /etc/passwd. */
function userIds(user: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`no ${user} user: cannot run a private PostgreSQL cluster as root`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}
