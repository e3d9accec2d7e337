/**
 * The agent's state dir: its identity, the distribution cache and a lock file. The agent only
 * ever deletes what it created there, so pointing --state-dir at a shared folder is not fatal.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { acquirePidLock, LockHeldError, releasePidLock } from '../lib/pid-lock.js';
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

  /**
   * Creates the dir (mode 700) and takes the lock; a second agent on the same dir is refused.
   * Returns the pid of a dead agent whose lock was left behind (kill -9) and taken over.
   */
  lock(): number | undefined {
    mkdirSync(this.path, { recursive: true, mode: 0o700 });
    const stale = lockDir(this.path, 'state dir', '--state-dir');
    this.locked = true;
    return stale;
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

/**
 * Takes `dir`'s lock file for this process; refused while another live agent holds it. Returns
 * the pid of a dead agent whose stale lock was taken over (the caller warns), else undefined.
 */
export function lockDir(dir: string, what: string, option: string): number | undefined {
  try {
    return acquirePidLock(join(dir, LOCK))?.pid;
  } catch (err) {
    if (err instanceof LockHeldError) throw new StateDirLockedError(`${what} ${dir} is in use by another agent (pid ${err.holder.pid}); give each agent its own ${option}`);
    throw new StateDirLockedError(`cannot lock ${what} ${dir}: ${(err as Error).message}`);
  }
}

export function unlockDir(dir: string): void {
  releasePidLock(join(dir, LOCK));
}

export function removeIfEmpty(dir: string): void {
  try {
    if (existsSync(dir) && readdirSync(dir).length === 0) rmdirSync(dir);
  } catch {
    // someone else's files appeared: leave the dir
  }
}
