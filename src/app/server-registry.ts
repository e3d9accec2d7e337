/**
 * Every control plane on one database records its URL with a heartbeat (table `servers`) and
 * keeps the list of live ones in memory: registration and heartbeat answers hand it to runners,
 * so a runner whose server dies knows where else to go (see agent/server-list.ts).
 */
import { randomUUID } from 'node:crypto';
import type { Db } from '../store/db.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { beatServer, liveServerUrls, removeServer } from '../store/queries/servers.js';

/** A server silent this many beats is no longer listed. */
const LIVE_BEATS = 3;

export class ServerRegistry {
  readonly id = randomUUID();
  private urls: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> = Promise.resolve();
  private url = '';

  constructor(private db: Db, private clock: Clock, private log: Logger, private intervalMs: number) {}

  /** Live servers' URLs, this one first. */
  get live(): string[] {
    return [this.url, ...this.urls.filter((u) => u !== this.url)].filter(Boolean);
  }

  async start(url: string): Promise<void> {
    this.url = url;
    await this.beat();
    this.timer = setInterval(() => void this.beat(), this.intervalMs);
    this.timer.unref();
  }

  private beat(): Promise<void> {
    this.beating = this.beating.then(async () => {
      const now = this.clock.now();
      try {
        await beatServer(this.db, now, { id: this.id, url: this.url, pid: process.pid });
        this.urls = await liveServerUrls(this.db, now - LIVE_BEATS * this.intervalMs, now - 100 * this.intervalMs);
      } catch (err) {
        this.log.warn({ err }, 'server heartbeat failed');
      }
    });
    return this.beating;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.beating;
    await removeServer(this.db, this.id).catch(() => {});
  }
}
