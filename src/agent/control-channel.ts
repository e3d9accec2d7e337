/*
 * The control channel: server-sent events on GET /runners/{id}/control, kept open for the life of
 * the agent.
 *
 *   connecting ──hello──▶ connected ──stream ends / error / no ping for 3 intervals──▶ backoff
 *       ▲                                                                                │
 *       └────────────────────────────────────────────────────────────────────────────────┘
 *   401 ▶ 'unauthorized' (credential revoked)     410 ▶ 'gone' (runner terminated)
 *
 * "Connected" means the server's hello arrived, not merely that TCP is up. Until the first
 * attempt is over the channel is `opening` (the agent claims meanwhile rather than wait for it).
 */
import { EventEmitter } from 'node:events';
import { createParser } from 'eventsource-parser';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { Backoff, Sleep } from './backoff.js';
import { classifyStatus } from './errors.js';
import { PingWatchdog } from './ping-watchdog.js';
import type { ControlResponse } from './runner-client.js';
import type { ControlEventName } from '../protocol/runner.js';

export interface ControlChannelEvents {
  connected: [];
  disconnected: [reason: string];
  /** An attempt ended without a hello (the first one ends `opening`). */
  failed: [reason: string];
  event: [name: ControlEventName, data: any];
  unauthorized: [];
  gone: [];
}

export interface ControlChannelDeps {
  open: (signal: AbortSignal) => Promise<ControlResponse>;
  pingIntervalMs: number;
  clock: Clock;
  sleep: Sleep;
  backoff: Backoff;
  log: Logger;
}

export class ControlChannel extends EventEmitter<ControlChannelEvents> {
  private readonly stop = new AbortController();
  /** Aborted to drop the connection (or the wait before the next) and connect again now. */
  private kick = new AbortController();
  private loop: Promise<void> | undefined;
  private isConnected = false;
  private firstAttempt = true;

  constructor(private readonly deps: ControlChannelDeps) {
    super();
  }

  get connected(): boolean {
    return this.isConnected;
  }

  /** The first connection attempt is still under way (no hello yet, no failure either). */
  get opening(): boolean {
    return this.firstAttempt && !this.isConnected;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.loop;
  }

  /** Connects again at once (the agent moved to another server). */
  reconnect(): void {
    this.kick.abort();
  }

  private async run(): Promise<void> {
    const { backoff, sleep, log } = this.deps;
    while (!this.stop.signal.aborted) {
      if (this.kick.signal.aborted) {
        this.kick = new AbortController();
        backoff.reset();
      }
      const outcome = await this.connectOnce();
      this.firstAttempt = false;
      if (this.isConnected) {
        this.isConnected = false;
        this.emit('disconnected', outcome.reason);
      } else this.emit('failed', outcome.reason);
      if (outcome.final || this.stop.signal.aborted) return;
      const delayMs = backoff.next();
      log.warn({ reason: outcome.reason, delayMs, attempt: backoff.failures }, 'control channel down; reconnecting');
      await sleep(delayMs, AbortSignal.any([this.stop.signal, this.kick.signal]));
    }
  }

  /** One connection, from request to end of stream. */
  private async connectOnce(): Promise<{ reason: string; final?: boolean }> {
    const { open, pingIntervalMs, clock, sleep } = this.deps;
    const conn = new AbortController();
    const onStop = () => conn.abort();
    this.stop.signal.addEventListener('abort', onStop, { once: true });
    const kick = this.kick.signal;
    kick.addEventListener('abort', onStop, { once: true });
    const watchdog = new PingWatchdog(3 * pingIntervalMs, clock, sleep);
    let expired = false;
    const watching = watchdog.run(conn.signal).then((r) => {
      if (r === 'expired') {
        expired = true;
        conn.abort();
      }
    });
    try {
      const res = await open(conn.signal);
      const cls = classifyStatus(res.status);
      if (cls === 'unauthorized' || cls === 'gone') {
        this.emit(cls);
        return { reason: cls === 'gone' ? 'runner terminated (410)' : 'credential refused (401)', final: true };
      }
      if (res.status < 200 || res.status > 299 || !res.body) return { reason: `HTTP ${res.status}` }; // closed below
      const parser = createParser({
        onEvent: (e) => {
          watchdog.touch();
          let data: unknown = {};
          try {
            data = e.data ? JSON.parse(e.data) : {};
          } catch {
            // a malformed payload still counts as a sign of life
          }
          const name = (e.event ?? 'message') as ControlEventName;
          if (name === 'hello' && !this.isConnected) {
            this.isConnected = true;
            this.deps.backoff.reset();
            this.emit('connected');
          }
          this.emit('event', name, data);
        },
      });
      const decoder = new TextDecoder();
      for await (const chunk of res.body) {
        watchdog.touch();
        parser.feed(decoder.decode(chunk, { stream: true }));
      }
      return { reason: 'server closed the stream' };
    } catch (err) {
      if (expired) return { reason: `no event for ${3 * pingIntervalMs}ms` };
      if (this.stop.signal.aborted) return { reason: 'closed' };
      const e = err as Error & { code?: string; cause?: { code?: string } };
      return { reason: e.code ?? e.cause?.code ?? e.message };
    } finally {
      this.stop.signal.removeEventListener('abort', onStop);
      kick.removeEventListener('abort', onStop);
      conn.abort();
      await watching;
    }
  }
}
