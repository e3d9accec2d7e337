/*
 * The control planes a runner may talk to: the one it was started with, plus every live server
 * its server lists (registration and heartbeat answers). When the current one has not answered
 * for `failoverMs` (connection refused, no answer), the agent moves to the next one; runners of
 * a server that died keep working through the others, with the same credential (one database).
 *
 *   current ──unreachable for failoverMs──▶ next known server (round robin) ──▶ current …
 *      └─ any answer, even an error status, counts as reachable
 */
import type { Clock } from '../lib/clock.js';

export class ServerList {
  private urls: string[];
  private index = 0;
  private failingSince: number | undefined;

  constructor(
    initial: string,
    private readonly failoverMs: number,
    private readonly clock: Clock,
  ) {
    this.urls = [normalize(initial)];
  }

  get current(): string {
    return this.urls[this.index]!;
  }

  get known(): readonly string[] {
    return this.urls;
  }

  /** The servers' own list; the current one stays known (and current) even if unlisted. Returns whether the set changed. */
  update(urls: string[] | undefined): boolean {
    if (!urls?.length) return false;
    const current = this.current;
    const next = [...new Set([current, ...urls.map(normalize)])];
    const changed = next.length !== this.urls.length || next.some((u) => !this.urls.includes(u));
    this.urls = next;
    this.index = 0;
    return changed;
  }

  /** The current server answered. */
  reachable(): void {
    this.failingSince = undefined;
  }

  /**
   * The current server did not answer. Returns the server to move to once it has been
   * unreachable for `failoverMs` and another is known; undefined while it is not time yet.
   */
  unreachable(): string | undefined {
    const now = this.clock.now();
    this.failingSince ??= now;
    if (this.urls.length < 2 || now - this.failingSince < this.failoverMs) return undefined;
    this.index = (this.index + 1) % this.urls.length;
    this.failingSince = now; // the next one gets its own while
    return this.current;
  }
}

function normalize(url: string): string {
  return url.replace(/\/+$/, '');
}
