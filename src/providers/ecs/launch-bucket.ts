import { sleep as realSleep } from '../../lib/clock.js';

/**
 * A client-side token bucket shaped like Fargate's task launch limit (a burst of 100, then 20
 * tasks a second): RunTask calls wait here instead of being refused by ECS, so a burst of jobs
 * turns into a steady stream of launches rather than a storm of throttling errors and backoffs.
 * Callers are served in order; time and sleeping are injected.
 */
export class LaunchBucket {
  private tokens: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly burst: number,
    readonly perSecond: number,
    private now: () => number = () => performance.now(),
    private sleep: (ms: number) => Promise<void> = realSleep,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  private refill() {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.perSecond);
    this.last = t;
  }

  /** Waits until `n` launches (at most the burst) may go, then takes them. */
  take(n: number): Promise<void> {
    const want = Math.min(n, this.burst);
    const turn = this.queue.then(async () => {
      for (;;) {
        this.refill();
        if (this.tokens >= want - 1e-9) {
          this.tokens -= want;
          return;
        }
        await this.sleep(Math.ceil(((want - this.tokens) / this.perSecond) * 1000));
      }
    });
    this.queue = turn;
    return turn;
  }

  /** Seconds the bucket needs, from full, to let `n` launches go: the floor a burst can reach. */
  static floorSeconds(n: number, burst: number, perSecond: number): number {
    return Math.max(0, n - burst) / perSecond;
  }
}
