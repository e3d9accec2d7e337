import type { EventEmitter } from 'node:events';

/** Resolves when any of `events` is emitted on `bus`, after `ms`, or on abort — whichever is first. */
export function waitForAny(bus: EventEmitter, events: string[], ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    for (const e of events) bus.on(e, done);
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      for (const e of events) bus.off(e, done);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
