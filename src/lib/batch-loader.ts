/**
 * Coalesces reads by key: every key asked for while a load is in flight (or in the same turn of
 * the event loop) is fetched by the next single load, so a thousand callers a second cost a
 * handful of statements rather than one each. A lone caller is served at once.
 */
export class BatchLoader<K, V> {
  private waiting = new Map<K, { resolve: (v: V | undefined) => void; reject: (err: unknown) => void }[]>();
  private draining = false;

  constructor(
    private load: (keys: K[]) => Promise<Map<K, V>>,
    private maxBatch = 512,
  ) {}

  get(key: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      const callers = this.waiting.get(key);
      if (callers) callers.push({ resolve, reject });
      else this.waiting.set(key, [{ resolve, reject }]);
      if (this.draining) return;
      this.draining = true;
      setImmediate(() => void this.drain());
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.waiting.size > 0) {
        const batch = [...this.waiting].slice(0, this.maxBatch);
        for (const [key] of batch) this.waiting.delete(key);
        try {
          const found = await this.load(batch.map(([key]) => key));
          for (const [key, callers] of batch) for (const c of callers) c.resolve(found.get(key));
        } catch (err) {
          for (const [, callers] of batch) for (const c of callers) c.reject(err);
        }
      }
    } finally {
      this.draining = false;
    }
  }
}
