/**
 * A level-less wake-up: `wait()` resolves on the next `fire()`. Loops that sleep until "something
 * changed" (a slot freed, the channel connected, an operator enabled the runner) wait on one.
 */
export class Wakeup {
  private waiters: (() => void)[] = [];

  wait(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.push(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  fire(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }
}
