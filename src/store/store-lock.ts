/**
 * One server per embedded store. PGlite cannot share its data dir: a second process opening it
 * dies inside WebAssembly ("Aborted()"). A pid lock taken before PGlite opens names the holder.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { acquirePidLock, LockHeldError, releasePidLock } from '../lib/pid-lock.js';

/** Another live runyard holds the data dir. */
export class DataDirInUseError extends Error {
  constructor(readonly dataDir: string, readonly pid: number, readonly url: string | undefined) {
    super(
      `data dir ${dataDir} is in use by another runyard (pid ${pid}${url ? `, serving ${url}` : ''}); ` +
        'stop it first, or give this one its own --data-dir (or share a PostgreSQL with RUNYARD_DATABASE_URL)',
    );
    this.name = 'DataDirInUseError';
  }
}

/** Locks `dataDir` for this process's embedded store; returns the release function. */
export function lockEmbeddedStore(dataDir: string): () => void {
  const file = join(dataDir, 'store.lock');
  try {
    acquirePidLock(file);
  } catch (err) {
    if (err instanceof LockHeldError) throw new DataDirInUseError(dataDir, err.holder.pid, serverUrlOf(dataDir, err.holder.pid));
    throw err;
  }
  return () => releasePidLock(file);
}

/** The URL in server.json, when it was written by `pid`. */
export function serverUrlOf(dataDir: string, pid: number): string | undefined {
  try {
    const s = JSON.parse(readFileSync(join(dataDir, 'server.json'), 'utf8'));
    return s.pid === pid && typeof s.url === 'string' ? s.url : undefined;
  } catch {
    return undefined;
  }
}
