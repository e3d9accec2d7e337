/*
 * The runner's lease on its jobs, on the agent's monotonic clock.
 *
 *   held ──no answered heartbeat for leaseMs──▶ expired ──a heartbeat sent after it answered──▶ held
 *
 * A heartbeat renews the lease from the moment it was sent (the server counts from when it
 * received it, which is later), so the agent's lease always ends before the server's view of it.
 * Every check reads the clock afresh: an agent that was frozen (SIGSTOP) finds the lease expired
 * the moment it looks, before any timer of its own has fired, and each expiry starts a new epoch
 * so work begun under an earlier lease can tell it no longer holds.
 */
import { EventEmitter } from 'node:events';
import type { Clock } from '../lib/clock.js';
import type { Sleep } from './backoff.js';

export interface LeaseEvents {
  expired: [];
  renewed: [];
}

export class Lease extends EventEmitter<LeaseEvents> {
  private expiresAt: number;
  private current = 0;
  private isExpired = false;
  /** Aborted by a renewal or close(): the watch loop looks again. */
  private wake = new AbortController();
  private stopped = false;

  constructor(
    readonly leaseMs: number,
    private readonly clock: Clock,
    private readonly sleep: Sleep,
    /** When the granting request (registration) was sent. */
    grantedAt: number,
  ) {
    super();
    this.expiresAt = grantedAt + leaseMs;
  }

  /** Until when (monotonic ms) the lease holds, as far as the agent knows. */
  get deadline(): number {
    return this.expiresAt;
  }

  /** Increases with each expiry. */
  get epoch(): number {
    this.check();
    return this.current;
  }

  /** Whether the lease holds now; an expiry noticed here is announced at once. */
  check(): boolean {
    if (!this.isExpired && this.clock.now() >= this.expiresAt) {
      this.isExpired = true;
      this.current++;
      this.emit('expired');
    }
    return !this.isExpired;
  }

  /** Whether the lease has held without a break since `epoch` was read. */
  holds(epoch: number): boolean {
    return this.check() && this.current === epoch;
  }

  /** A heartbeat sent at `sentAt` (monotonic) was answered. */
  renew(sentAt: number): void {
    this.check();
    const until = sentAt + this.leaseMs;
    if (until <= this.expiresAt) return;
    this.expiresAt = until;
    this.wake.abort();
    if (this.isExpired && this.clock.now() < until) {
      this.isExpired = false;
      this.emit('renewed');
    }
  }

  /** Watches for the expiry, so it is acted on even when nothing else looks. */
  async run(): Promise<void> {
    while (!this.stopped) {
      this.wake = new AbortController();
      const left = this.expiresAt - this.clock.now();
      if (left > 0) {
        await this.sleep(Math.min(left, 2 ** 31 - 1), this.wake.signal);
        continue;
      }
      this.check();
      // expired: wait for a renewal
      const wake = this.wake.signal;
      if (!wake.aborted) await new Promise<void>((resolve) => wake.addEventListener('abort', () => resolve(), { once: true }));
    }
  }

  close(): void {
    this.stopped = true;
    this.wake.abort();
  }
}
