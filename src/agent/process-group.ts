/**
 * A shell script running in its own process group (`detached: true` makes the shell a group
 * leader), so a job's whole tree — background children included — is signalled at once:
 * SIGTERM to the group, then SIGKILL to whatever is still there after the grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import type { Clock } from '../lib/clock.js';
import type { Sleep } from './backoff.js';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the shell could not be started at all. */
  error?: string;
}

/**
 * Joins commands into one shell script: `{ cmd1 } && { cmd2 } && …`. They share one shell, so a
 * `cd` or `export` carries over; each command's exit status decides whether the next runs, and
 * the first non-zero status is the job's exit code. (Plain `set -e` was avoided: it is silently
 * disabled inside `if`, `&&` and `||`, which surprises users.) Newlines around each command keep
 * comments, here-documents and trailing `&` working.
 */
export function buildScript(commands: string[]): string {
  return commands.map((c) => `{\n${c}\n}`).join(' &&\n');
}

export class ProcessGroup {
  readonly exited: Promise<ExitStatus>;
  private done = false;

  private constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.done = true;
        resolve({ code, signal });
      });
      child.once('error', (err) => {
        this.done = true;
        resolve({ code: null, signal: null, error: err.message });
      });
    });
  }

  static spawn(script: string, opts: { cwd: string; env: NodeJS.ProcessEnv }): ProcessGroup {
    const child = spawn('/bin/sh', ['-c', script], { cwd: opts.cwd, env: opts.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    return new ProcessGroup(child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Whether the leader has exited. */
  get leaderExited(): boolean {
    return this.done;
  }

  /** Signals every process of the group; false when none is left. */
  signal(sig: NodeJS.Signals | 0): boolean {
    if (!this.child.pid) return false;
    try {
      process.kill(-this.child.pid, sig);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
      throw err;
    }
  }

  /**
   * Whether any process of the group is still running. Zombies do not count: without an init
   * that reaps orphans (an agent as PID 1 in a container), they would stay "alive" forever.
   */
  get groupAlive(): boolean {
    if (!this.child.pid || !this.signal(0)) return false;
    return livingMembers(this.child.pid) !== 0;
  }

  /**
   * SIGTERM to the group; SIGKILL to what is left after `graceMs`. Resolves when the group is
   * empty (or, for processes stuck as zombies, right after the SIGKILL).
   */
  async terminate(graceMs: number, clock: Clock, sleep: Sleep, pollMs = 50): Promise<'terminated' | 'killed'> {
    if (!this.signal('SIGTERM')) return 'terminated';
    const deadline = clock.now() + graceMs;
    while (clock.now() < deadline) {
      await sleep(Math.min(pollMs, Math.max(1, deadline - clock.now())));
      if (!this.groupAlive) return 'terminated';
    }
    this.signal('SIGKILL');
    return 'killed';
  }

  /** SIGKILL to the whole group now. */
  kill(): void {
    this.signal('SIGKILL');
  }
}

/**
 * Non-zombie processes in a process group, from /proc (Linux); -1 where /proc is not available,
 * meaning "unknown, assume some".
 */
function livingMembers(pgid: number): number {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return -1;
  }
  let n = 0;
  for (const e of entries) {
    if (e.charCodeAt(0) < 48 || e.charCodeAt(0) > 57) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // state ppid pgrp …
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') n++;
    } catch {
      // exited while we looked
    }
  }
  return n;
}
