/*
 * Load generators run in their own processes, so the server's event loop (in the section's
 * process) is measured without the client's work on it. They talk to the section over IPC.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';

const LOAD_DIR = resolve(import.meta.dirname, '../load');

export class LoadProcess {
  readonly child: ChildProcess;
  private inbox: any[] = [];
  private waiters: { type: string; resolve: (m: any) => void; reject: (e: Error) => void }[] = [];
  readonly exited: Promise<number | null>;
  stderr = '';

  constructor(script: string, env: Record<string, string> = {}, execArgv: string[] = []) {
    this.child = fork(resolve(LOAD_DIR, script), [], {
      execArgv: ['--import', 'tsx', ...execArgv],
      env: { ...process.env, NODE_OPTIONS: '', ...env },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      this.stderr = (this.stderr + s).slice(-20_000);
      process.stderr.write(s);
    });
    this.child.on('message', (m: any) => {
      const i = this.waiters.findIndex((w) => w.type === m?.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
      else this.inbox.push(m);
    });
    this.exited = new Promise((r) =>
      this.child.once('exit', (code) => {
        for (const w of this.waiters.splice(0)) w.reject(new Error(`load process ${script} exited (code ${code}) while waiting for "${w.type}"\n${this.stderr.slice(-2000)}`));
        r(code);
      }),
    );
  }

  send(msg: unknown): void {
    this.child.send(msg as any);
  }

  /** The next message of this type (already received or still to come). */
  next<T = any>(type: string, timeoutMs = 600_000): Promise<T> {
    const i = this.inbox.findIndex((m) => m?.type === type);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    if (this.child.exitCode !== null) return Promise.reject(new Error(`load process already exited while waiting for "${type}"`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs}ms waiting for "${type}" from load process`)), timeoutMs);
      this.waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  async request<T = any>(msg: { type: string; [k: string]: unknown }, reply: string, timeoutMs?: number): Promise<T> {
    const p = this.next<T>(reply, timeoutMs);
    this.send(msg);
    return p;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      try {
        this.send({ type: 'exit' });
      } catch {
        // channel closed
      }
      const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(t);
    }
  }
}

/** In a load process: handle messages from the section. */
export function onParentMessage(handler: (m: any) => Promise<void> | void): void {
  process.on('message', (m: any) => {
    if (m?.type === 'exit') process.exit(0);
    Promise.resolve(handler(m)).catch((err) => {
      process.stderr.write(`load process error: ${(err as Error).stack ?? err}\n`);
      process.send?.({ type: 'error', message: String((err as Error).message) });
      process.exit(1);
    });
  });
  process.on('disconnect', () => process.exit(0));
}

export function toParent(msg: unknown): void {
  process.send?.(msg as any);
}
