/**
 * In-process fan-out to runners: their SSE control channels, and claim long-polls parked until
 * work arrives. A wake-up is a function call, not a database round trip.
 */
import type { ControlEventName } from '../protocol/runner.js';

export type ControlEvent = ControlEventName;
/** Sends one event; `frame` is the event already serialised, when the caller has it. */
export type ControlSend = (event: ControlEvent, data: unknown, frame?: string) => void;

/** An event as written on the wire (server-sent events). */
export function sseFrame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

interface Waiter {
  wake: () => void;
}

export class ControlHub {
  private channels = new Map<string, Set<ControlSend>>();
  private poolOf = new Map<string, string>();
  private waiters = new Map<string, Set<Waiter>>();
  private generations = new Map<string, number>();

  connect(runnerId: string, pool: string, send: ControlSend): () => void {
    this.poolOf.set(runnerId, pool);
    let set = this.channels.get(runnerId);
    if (!set) this.channels.set(runnerId, (set = new Set()));
    set.add(send);
    return () => {
      set!.delete(send);
      if (set!.size === 0 && this.channels.get(runnerId) === set) {
        this.channels.delete(runnerId);
        this.poolOf.delete(runnerId);
      }
    };
  }

  isConnected(runnerId: string): boolean {
    return this.channels.has(runnerId);
  }

  connectionCount(): number {
    let n = 0;
    for (const s of this.channels.values()) n += s.size;
    return n;
  }

  /** Sends an event to one runner; returns whether any channel of it is open here. */
  send(runnerId: string, event: ControlEvent, data: unknown = {}): boolean {
    const set = this.channels.get(runnerId);
    if (!set) return false;
    for (const send of set) send(event, data);
    return true;
  }

  /** One event to every channel, serialised once. */
  broadcast(event: ControlEvent, data: unknown = {}): void {
    const frame = sseFrame(event, data);
    for (const set of this.channels.values()) for (const send of set) send(event, data, frame);
  }

  /** Bumped whenever work arrives on a pool; a claimer that saw an older value must not sleep. */
  generation(pool: string): number {
    return this.generations.get(pool) ?? 0;
  }

  /**
   * Parks a claim long-poll on a pool until woken, the timeout, or the signal aborts. Returns at
   * once if work arrived since the claimer read `sinceGeneration` (no lost wake-ups).
   */
  park(pool: string, sinceGeneration: number, signal: AbortSignal, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.generation(pool) !== sinceGeneration || signal.aborted) return resolve();
      let set = this.waiters.get(pool);
      if (!set) this.waiters.set(pool, (set = new Set()));
      const waiter: Waiter = { wake: finish };
      set.add(waiter);
      const timer = setTimeout(finish, timeoutMs);
      signal.addEventListener('abort', finish, { once: true });
      const pools = this.waiters;
      function finish() {
        clearTimeout(timer);
        signal.removeEventListener('abort', finish);
        set!.delete(waiter);
        if (set!.size === 0 && pools.get(pool) === set) pools.delete(pool);
        resolve();
      }
    });
  }

  /**
   * Work arrived on a pool: wake up to `count` parked claimers; returns how many were woken so
   * the caller can nudge other runners of the pool over their control channels.
   */
  wakePool(pool: string, count: number): number {
    this.generations.set(pool, this.generation(pool) + 1);
    const set = this.waiters.get(pool);
    if (!set) return 0;
    let woken = 0;
    for (const w of [...set]) {
      if (woken >= count) break;
      w.wake();
      woken++;
    }
    return woken;
  }

  /** Sends `job` to up to `count` connected runners of a pool (those not parked in a claim). */
  nudgePool(pool: string, count: number): void {
    let sent = 0;
    for (const [id, p] of this.poolOf) {
      if (sent >= count) break;
      if (p === pool && this.send(id, 'job', { pool })) sent++;
    }
  }

  closeAll(): void {
    for (const set of this.waiters.values()) for (const w of [...set]) w.wake();
  }
}
