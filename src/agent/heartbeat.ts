/**
 * Heartbeats: every interval, tell the server which jobs this runner holds; it answers with jobs
 * to cancel and jobs whose claim was lost, and each answer renews the runner's lease. A failed
 * beat is logged and tried again soon (backing off up to the interval), so one lost request
 * does not cost the lease; gone (410) and unauthorized (401) end the loop, anything else is
 * retried.
 */
import type { Logger } from '../lib/logger.js';
import { Backoff, type Sleep } from './backoff.js';
import { classify } from './errors.js';
import type { HeartbeatResponse } from '../protocol/runner.js';

export interface HeartbeatDeps {
  send: (signal: AbortSignal) => Promise<HeartbeatResponse>;
  intervalMs: number;
  /** The first beat waits one interval (the registration that just happened renewed the lease). */
  delayFirst?: boolean;
  sleep: Sleep;
  log: Logger;
  onResponse: (r: HeartbeatResponse) => void;
  /** Any other failure (the server did not answer, or answered with an error). */
  onFailure?: (err: Error) => void;
  /** 410 (the runner was terminated) or 401 (the credential was revoked): the loop is over. */
  onEnded: (why: 'gone' | 'unauthorized') => void;
}

export class HeartbeatLoop {
  private readonly stop = new AbortController();
  private loop: Promise<void> | undefined;
  private failures = 0;
  private readonly retry: Backoff;

  constructor(private readonly deps: HeartbeatDeps) {
    this.retry = new Backoff({ baseMs: Math.min(250, deps.intervalMs), maxMs: deps.intervalMs });
  }

  start(): void {
    this.loop ??= this.run();
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { send, intervalMs, sleep, log } = this.deps;
    if (this.deps.delayFirst) await sleep(intervalMs, this.stop.signal);
    while (!this.stop.signal.aborted) {
      let delayMs = intervalMs;
      try {
        const r = await send(this.stop.signal);
        if (this.failures > 0) log.info({ failures: this.failures }, 'heartbeats resumed');
        this.failures = 0;
        this.retry.reset();
        this.deps.onResponse(r);
      } catch (err) {
        if (this.stop.signal.aborted) return;
        const cls = classify(err);
        if (cls === 'gone' || cls === 'unauthorized') return this.deps.onEnded(cls);
        this.failures++;
        this.deps.onFailure?.(err as Error);
        // the first failure and then every tenth: a long outage must not flood the log
        if (this.failures === 1 || this.failures % 10 === 0) log.warn({ failures: this.failures, reason: (err as Error).message }, 'heartbeat failed');
        delayMs = this.retry.next();
      }
      await sleep(delayMs, this.stop.signal);
    }
  }
}
