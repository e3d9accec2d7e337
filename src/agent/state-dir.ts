/**
 * The agent's state dir: its identity, the distribution cache and a lock file. The agent only
 * ever deletes what it created there, so pointing --state-dir at a shared folder is not fatal.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StateDirLockedError } from './errors.js';

const LOCK = 'agent.lock';

export class StateDir {
  readonly path: string;
  private locked = false;

  constructor(path: string) {
    this.path = resolve(path);
  }

  get identityFile(): string {
    return join(this.path, 'identity.json');
  }

  get distCacheDir(): string {
    return join(this.path, 'dist');
  }

  /** Creates the dir (mode 700) and takes the lock; a second agent on the same dir is refused. */
  lock(): void {
    mkdirSync(this.path, { recursive: true, mode: 0o700 });
    lockDir(this.path, 'state dir', '--state-dir');
    this.locked = true;
  }

  unlock(): void {
    if (!this.locked) return;
    this.locked = false;
    unlockDir(this.path);
  }

  /** `delete`: removes the identity, the cache and the lock, then the dir itself if now empty. */
  removeOwned(): void {
    rmSync(this.identityFile, { force: true });
    rmSync(this.distCacheDir, { recursive: true, force: true });
    this.unlock();
    removeIfEmpty(this.path);
  }
}

/** Takes `dir`'s lock file for this process; refused while another live agent holds it. */
export function lockDir(dir: string, what: string, option: string): void {
  const file = join(dir, LOCK);
  for (let i = 0; i < 2; i++) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(file, 'utf8').trim());
      if (pid && pid !== process.pid && isAlive(pid)) {
        throw new StateDirLockedError(`${what} ${dir} is in use by another agent (pid ${pid}); give each agent its own ${option}`);
      }
      if (pid === process.pid) return;
      rmSync(file, { force: true }); // stale lock of a dead agent
    }
  }
  throw new StateDirLockedError(`cannot lock ${what} ${dir}`);
}

export function unlockDir(dir: string): void {
  rmSync(join(dir, LOCK), { force: true });
}

export function removeIfEmpty(dir: string): void {
  try {
    if (existsSync(dir) && readdirSync(dir).length === 0) rmdirSync(dir);
  } catch {
    // someone else's files appeared: leave the dir
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
