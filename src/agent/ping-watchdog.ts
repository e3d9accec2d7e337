import type { Clock } from '../lib/clock.js';
import type { Sleep } from './backoff.js';

/**
 * Declares a connection dead when nothing arrived for `timeoutMs` (3 ping intervals). It sleeps
 * exactly until the current deadline and re-checks, so with an injected clock and sleep a test
 * drives it without waiting.
 */
export class PingWatchdog {
  private lastSeen: number;

  constructor(
    private readonly timeoutMs: number,
    private readonly clock: Clock,
    private readonly sleep: Sleep,
  ) {
    this.lastSeen = clock.now();
  }

  /** Something arrived (an event, a ping, any bytes). */
  touch(): void {
    this.lastSeen = this.clock.now();
  }

  /** Resolves 'expired' when the deadline passes without a touch, 'stopped' when `signal` aborts. */
  async run(signal: AbortSignal): Promise<'expired' | 'stopped'> {
    for (;;) {
      if (signal.aborted) return 'stopped';
      const left = this.lastSeen + this.timeoutMs - this.clock.now();
      if (left <= 0) return 'expired';
      await this.sleep(left, signal);
    }
  }
}
