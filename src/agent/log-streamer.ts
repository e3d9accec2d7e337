/*
 * Streams one job's log lines to the server in ordered batches.
 *
 *   lines ──▶ pending ──(150 ms after the first line, or a full batch)──▶ POST logs seq=n ──▶ n+1
 *                                                                          │
 *             network / 5xx: same batch, same seq, after a backoff ◀───────┤ (the server ignores a
 *             409/410/401: claim lost — drop everything, tell the job      │  seq it already has)
 *             other 4xx: drop this batch, log it, go on                    ┘
 *
 * One batch is in flight at a time, so batches arrive in order. When the backlog grows past the
 * high-water mark (server down, job printing fast) the job's pipes are paused until it drains:
 * nothing is dropped, the job just waits on its writes.
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { Backoff, Sleep } from './backoff.js';
import { classify, statusOf } from './errors.js';
import type { LogLine } from '../protocol/runner.js';

export interface LogStreamerDeps {
  send: (seq: number, lines: LogLine[]) => Promise<{ cancel: boolean }>;
  clock: Clock;
  sleep: Sleep;
  backoff: Backoff;
  log: Logger;
  /** The server asked to cancel the job (answer to a batch). */
  onCancel: () => void;
  /** The server refused a batch with 409 (or 410, 401): this runner no longer holds the claim. */
  onLost: () => void;
  /** Backlog crossed the high-water mark (true) or drained below the low-water mark (false). */
  onPressure?: (paused: boolean) => void;
  flushMs?: number;
  maxBatchLines?: number;
  maxBatchBytes?: number;
  highWaterBytes?: number;
}

export class LogStreamer {
  private pending: { line: LogLine; bytes: number }[] = [];
  private pendingBytes = 0;
  private seq = 0;
  private running: Promise<void> | undefined;
  private wake: AbortController | undefined;
  private closing = false;
  private abandoned = false;
  private lost = false;
  private paused = false;
  private readonly stopped = new AbortController();
  private readonly flushMs: number;
  private readonly maxLines: number;
  private readonly maxBytes: number;
  private readonly highWater: number;
  /** Lines accepted by the server, for the job's summary. */
  sentLines = 0;

  constructor(private readonly deps: LogStreamerDeps) {
    this.flushMs = deps.flushMs ?? 150;
    this.maxLines = deps.maxBatchLines ?? 5000;
    // The server takes bodies up to 1 MiB; half of that leaves room for the envelope.
    this.maxBytes = deps.maxBatchBytes ?? 512 * 1024;
    this.highWater = deps.highWaterBytes ?? 32 * 1024 * 1024;
  }

  push(s: LogLine['s'], m: string): void {
    if (this.abandoned) return;
    const line: LogLine = { t: this.deps.clock.now(), s, m };
    const bytes = Buffer.byteLength(JSON.stringify(m)) + 32;
    this.pending.push({ line, bytes });
    this.pendingBytes += bytes;
    if (!this.paused && this.pendingBytes > this.highWater) {
      this.paused = true;
      this.deps.onPressure?.(true);
    }
    if (this.batchFull()) this.wake?.abort();
    this.running ??= this.pump();
  }

  /** Sends everything still pending; resolves 'lost' if the server refused the claim. */
  async close(): Promise<'ok' | 'lost'> {
    this.closing = true;
    this.wake?.abort();
    while (this.running) await this.running;
    return this.lost ? 'lost' : 'ok';
  }

  /** Drops everything unsent and stops (claim lost, runner deleted). */
  abandon(): void {
    this.abandoned = true;
    this.stopped.abort();
    this.pending = [];
    this.pendingBytes = 0;
    this.wake?.abort();
  }

  private batchFull(): boolean {
    return this.pending.length >= this.maxLines || this.pendingBytes >= this.maxBytes;
  }

  private async pump(): Promise<void> {
    try {
      while (this.pending.length && !this.abandoned) {
        if (!this.closing && !this.batchFull()) {
          this.wake = new AbortController();
          await this.deps.sleep(this.flushMs, this.wake.signal);
          this.wake = undefined;
        }
        const batch = this.take();
        if (batch.length) await this.deliver(batch);
      }
    } finally {
      this.running = undefined;
    }
  }

  private take(): LogLine[] {
    let n = 0;
    let bytes = 0;
    while (n < this.pending.length && n < this.maxLines && (n === 0 || bytes + this.pending[n]!.bytes <= this.maxBytes)) bytes += this.pending[n++]!.bytes;
    const batch = this.pending.splice(0, n);
    this.pendingBytes -= bytes;
    if (this.paused && this.pendingBytes < this.highWater / 2) {
      this.paused = false;
      this.deps.onPressure?.(false);
    }
    return batch.map((b) => b.line);
  }

  private async deliver(lines: LogLine[]): Promise<void> {
    const seq = ++this.seq;
    const { backoff, sleep, log } = this.deps;
    for (;;) {
      if (this.abandoned) return;
      try {
        const r = await this.deps.send(seq, lines);
        backoff.reset();
        this.sentLines += lines.length;
        if (r.cancel) this.deps.onCancel();
        return;
      } catch (err) {
        const cls = classify(err);
        if (cls === 'conflict' || cls === 'gone' || cls === 'unauthorized') {
          log.warn({ seq, status: statusOf(err) }, 'log batch refused: claim lost; dropping logs');
          this.lost = true;
          this.abandon();
          this.deps.onLost();
          return;
        }
        if (cls === 'fatal') {
          log.error({ seq, lines: lines.length, status: statusOf(err), reason: (err as Error).message }, 'log batch refused; dropping it');
          return;
        }
        const delayMs = backoff.next();
        if (backoff.failures === 1 || backoff.failures % 10 === 0) log.warn({ seq, delayMs, reason: (err as Error).message }, 'log batch not delivered; retrying');
        await sleep(delayMs, this.stopped.signal);
      }
    }
  }
}
