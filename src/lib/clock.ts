/** Time and sleeping are injected so scaling and recovery logic is testable without waiting. */
export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };
/**
 * CLOCK_MONOTONIC in milliseconds: never steps with the wall clock, keeps counting while the
 * process is stopped (SIGSTOP), and is the same for every process on the machine.
 */
export const monotonicClock: Clock = { now: () => Number(process.hrtime.bigint() / 1000n) / 1000 };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private t = Date.parse('2026-01-01T00:00:00Z')) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
