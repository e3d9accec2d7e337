/**
 * Heartbeats: every interval, tell the server which jobs this runner holds; it answers with jobs
 * to cancel and jobs whose claim was lost. A failed beat is logged and the next one tried on
 * schedule (the server tolerates a minute of silence); 401/410 end the loop.
 */
import type { Logger } from '../lib/logger.js';
import type { Sleep } from './backoff.js';
import { HttpError } from './errors.js';
import type { HeartbeatResponse } from './runner-client.js';

export interface HeartbeatDeps {
  send: (signal: AbortSignal) => Promise<HeartbeatResponse>;
  intervalMs: number;
  sleep: Sleep;
  log: Logger;
  onResponse: (r: HeartbeatResponse) => void;
  /** 410: the runner was terminated. */
  onGone: () => void;
  /** 401: the credential was revoked. */
  onUnauthorized: () => void;
}

export class HeartbeatLoop {
  private readonly stop = new AbortController();
  private loop: Promise<void> | undefined;
  private failures = 0;

  constructor(private readonly deps: HeartbeatDeps) {}

  start(): void {
    this.loop ??= this.run();
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { send, intervalMs, sleep, log } = this.deps;
    while (!this.stop.signal.aborted) {
      try {
        const r = await send(this.stop.signal);
        if (this.failures > 0) log.info({ failures: this.failures }, 'heartbeats resumed');
        this.failures = 0;
        this.deps.onResponse(r);
      } catch (err) {
        if (this.stop.signal.aborted) return;
        if (err instanceof HttpError && err.status === 410) return this.deps.onGone();
        if (err instanceof HttpError && err.status === 401) return this.deps.onUnauthorized();
        this.failures++;
        // the first failure and then every tenth: a long outage must not flood the log
        if (this.failures === 1 || this.failures % 10 === 0) log.warn({ failures: this.failures, reason: (err as Error).message }, 'heartbeat failed');
      }
      await sleep(intervalMs, this.stop.signal);
    }
  }
}
