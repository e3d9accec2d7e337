/**
 * Capped exponential backoff with jitter. Each delay is drawn from [exp/2, exp], where exp doubles
 * per attempt up to `maxMs`: retries spread out (no thundering herd after a server restart) but
 * never collapse to zero. `random` is injectable so tests get exact delays.
 */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  factor?: number;
  random?: () => number;
}

export class Backoff {
  private attempt = 0;

  constructor(private readonly opts: BackoffOptions) {}

  /** The delay before the next retry; each call counts one more failure. */
  next(): number {
    const { baseMs, maxMs, factor = 2, random = Math.random } = this.opts;
    const exp = Math.min(maxMs, baseMs * factor ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(exp / 2 + random() * (exp / 2));
  }

  /** Failures since the last success. */
  get failures(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Sleeps `ms`, returning early when `signal` aborts. Injected wherever timing logic lives. */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;
