import { sleep as realSleep } from './clock.js';

/**
 * A client-side rate limit: `perSecond` tokens a second, at most `burst` saved up. One accounting
 * serves three callers: client-go's qps/burst on the Kubernetes API (one token per call),
 * Fargate's task launch bucket on ECS RunTask (one token per task, `count` at a time), and the
 * simulator's provider API limit on its virtual clock.
 *
 * A reservation takes its tokens at once and may leave the bucket in debt; it is told when the
 * calls it stands for may go (now, or when the debt is paid back). take() is a reservation plus
 * the wait, so concurrent callers are served in order without a queue. Time and sleeping are
 * injected (the simulator passes its own `now` to reserve() and never sleeps).
 */
export class TokenBucket {
  private tokens: number;
  private at: number | undefined;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    readonly perSecond: number,
    readonly burst: number,
    clock: { now?: () => number; sleep?: (ms: number) => Promise<void> } = {},
  ) {
    if (!(perSecond > 0) || !(burst >= 1)) throw new RangeError(`a token bucket needs perSecond > 0 and burst >= 1 (got ${perSecond}, ${burst})`);
    this.tokens = burst;
    this.now = clock.now ?? (() => performance.now());
    this.sleep = clock.sleep ?? realSleep;
  }

  /**
   * Takes `n` tokens (at most the burst: a larger ask could never be served whole) at time `now`;
   * returns when the calls may happen: `now` when the tokens were there, else the time the debt
   * is paid back, rounded up to the millisecond.
   */
  reserve(n = 1, now = this.now()): number {
    if (this.at !== undefined && now > this.at) this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perSecond);
    if (this.at === undefined || now > this.at) this.at = now;
    this.tokens -= Math.min(n, this.burst);
    // a float's dust (1e-12 short after a refill) is no debt
    return this.tokens >= -1e-9 ? now : now + Math.ceil((-this.tokens / this.perSecond) * 1000);
  }

  /** Waits until `n` calls may go, then returns (callers in the order they asked). */
  async take(n = 1): Promise<void> {
    const now = this.now();
    const at = this.reserve(n, now);
    if (at > now) await this.sleep(at - now);
  }

  /** Milliseconds a full bucket needs to let `n` calls go: the floor a burst of them can reach. */
  static floorMs(n: number, burst: number, perSecond: number): number {
    return (Math.max(0, n - burst) / perSecond) * 1000;
  }
}
