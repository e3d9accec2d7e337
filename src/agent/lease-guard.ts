/**
 * The agent's side of the lease guard (see lease-guard-script.ts): a small Node process of its
 * own, in its own process group, that stops the agent's jobs when the lease runs out even if the
 * agent itself is frozen. The agent tells it each renewal and each job's process group.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from '../lib/logger.js';
import { GUARD_SCRIPT } from './lease-guard-script.js';

const MAX_RESTARTS = 5;

export class LeaseGuard {
  private child: ChildProcess | undefined;
  private deadline = -Infinity;
  private readonly groups = new Set<number>();
  private closed = false;
  private restarts = 0;

  /** Put in every job's environment as RUNYARD_LEASE_ID, so the guard finds strays by it. */
  readonly marker = randomBytes(12).toString('hex');

  constructor(private readonly opts: { killGraceMs: number; log: Logger }) {}

  /** The lease now holds until `deadline` (CLOCK_MONOTONIC ms, see monotonicClock). */
  renew(deadline: number): void {
    if (deadline <= this.deadline) return;
    this.deadline = deadline;
    this.send(`L ${Math.floor(deadline)}`);
  }

  /** Starts the guard ahead of the first job (Node takes a while to start on a busy machine). */
  start(): void {
    if (!this.child && !this.closed) this.spawn();
  }

  /** A job's group; starts the guard if it is not running yet. */
  add(pgid: number): void {
    this.groups.add(pgid);
    if (this.closed) return;
    if (this.child) this.send(`A ${pgid}`);
    else this.spawn();
  }

  remove(pgid: number): void {
    if (this.groups.delete(pgid)) this.send(`D ${pgid}`);
  }

  /** The agent is done with its jobs: the guard exits. */
  close(): void {
    this.closed = true;
    const child = this.child;
    this.child = undefined;
    if (!child?.stdin?.writable) return;
    child.stdin.end('Q\n');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  private send(line: string): void {
    if (!this.closed) this.child?.stdin?.write(line + '\n');
  }

  /** Starts the guard with the lease and groups as they are (also after it died). */
  private spawn(): ChildProcess {
    const [cmd, ...prefix] = nodeCommand();
    const child = spawn(cmd!, [...prefix, '--max-old-space-size=16', '-e', GUARD_SCRIPT, this.marker, String(this.opts.killGraceMs), String(process.pid)], {
      detached: true, // not stopped or killed with the agent's process group
      env: {},
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdin!.write(`L ${Math.floor(this.deadline)}\n${[...this.groups].map((g) => `A ${g}\n`).join('')}`);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-2000)));
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      for (const m of s.matchAll(/^E (\d+)$/gm)) this.opts.log.warn({ signalled: Number(m[1]) }, 'lease guard stopped the jobs: lease ran out');
    });
    child.stdin!.on('error', () => {}); // a dead guard is noticed by 'exit'
    child.once('error', (err) => this.opts.log.error({ reason: err.message }, 'lease guard could not start'));
    child.once('exit', (code, signal) => {
      if (this.child === child) {
        this.child = undefined;
        if (!this.closed) this.opts.log.error({ code, signal, stderr, restarts: this.restarts }, 'lease guard exited');
        // A guard that keeps dying is not restarted in a loop; the agent still enforces the lease itself.
        if (!this.closed && this.groups.size > 0 && this.restarts++ < MAX_RESTARTS) this.spawn();
      }
    });
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void })?.unref?.();
    return child;
  }
}

/**
 * How this process's Node was started, without our script: `process.execPath` is the dynamic
 * loader, not node, when the agent runs from its self-contained bundle (`ld.so … node …`).
 */
function nodeCommand(): string[] {
  try {
    const cmdline = readFileSync('/proc/self/cmdline', 'utf8').split('\0');
    const i = cmdline.indexOf(process.argv[1] ?? '');
    if (i > 0) {
      const prefix = cmdline.slice(0, i - process.execArgv.length);
      if (prefix.length > 0) return prefix;
    }
  } catch {
    // not Linux
  }
  return [process.execPath];
}
