/**
 * A lock file holding its owner's pid and, on Linux, the process's start time. A lock whose
 * process is gone, is a zombie, or whose pid now belongs to another process (the start time
 * differs: pid reuse, e.g. in a restarted container) is stale and taken over.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';

export interface LockHolder {
  pid: number;
  /** /proc/<pid>/stat start time (clock ticks since boot); absent off Linux. */
  start?: string;
}

/** The lock is held by a live process. */
export class LockHeldError extends Error {
  constructor(readonly file: string, readonly holder: LockHolder) {
    super(`${file} is held by pid ${holder.pid}`);
    this.name = 'LockHeldError';
  }
}

/**
 * Takes `file` for this process. Returns the holder of a stale lock it replaced (so the caller
 * can warn), or undefined; throws LockHeldError while a live process holds it.
 */
export function acquirePidLock(file: string): LockHolder | undefined {
  const me: LockHolder = { pid: process.pid, start: startTimeOf(process.pid) };
  let stale: LockHolder | undefined;
  for (let i = 0; i < 3; i++) {
    try {
      writeFileSync(file, JSON.stringify(me) + '\n', { flag: 'wx', mode: 0o600 });
      return stale;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = readHolder(file);
    if (holder && holder.pid === me.pid && (!holder.start || holder.start === me.start)) return undefined; // ours already
    if (holder && isRunning(holder)) throw new LockHeldError(file, holder);
    stale = holder ?? stale;
    rmSync(file, { force: true });
  }
  throw new Error(`cannot take the lock ${file}`);
}

export function releasePidLock(file: string): void {
  const holder = readHolder(file);
  // never remove a lock another process took over meanwhile
  if (!holder || holder.pid === process.pid) rmSync(file, { force: true });
}

/** The holder named in `file`: `{"pid":…,"start":…}`, or a bare pid (older lock files). */
export function readHolder(file: string): LockHolder | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
  if (/^\d+$/.test(text)) return { pid: Number(text) };
  try {
    const j = JSON.parse(text);
    if (Number.isInteger(j.pid) && j.pid > 0) return { pid: j.pid, start: typeof j.start === 'string' ? j.start : undefined };
  } catch {
    // half-written or garbage: no live holder can be named
  }
  return undefined;
}

function isRunning(h: LockHolder): boolean {
  try {
    process.kill(h.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStat(h.pid);
  if (stat === undefined) return true; // no /proc: the pid is all we know
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return !h.start || h.start === stat.start;
}

function startTimeOf(pid: number): string | undefined {
  return procStat(pid)?.start;
}

/** State and start time from /proc/<pid>/stat (fields 3 and 22; the name in field 2 may hold spaces). */
function procStat(pid: number): { state: string; start: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0]!, start: rest[19]! };
}
