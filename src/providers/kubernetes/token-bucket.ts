import { sleep as realSleep } from '../../lib/clock.js';

/**
 * A client-side rate limit as client-go's: `qps` tokens a second, at most `burst` saved up.
 * take() waits for a token; callers are served in order. Time and sleep are injected.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly qps: number,
    readonly burst: number,
    private now: () => number = Date.now,
    private sleep: (ms: number) => Promise<void> = realSleep,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  take(): Promise<void> {
    const turn = this.queue.then(() => this.wait());
    this.queue = turn.catch(() => {});
    return turn;
  }

  private async wait() {
    for (;;) {
      const t = this.now();
      this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.qps);
      this.last = t;
      if (this.tokens >= 1) {
        this.tokens -= 1;
        return;
      }
      await this.sleep(Math.ceil(((1 - this.tokens) / this.qps) * 1000));
    }
  }
}
