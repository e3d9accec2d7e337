/*
 * Reading a job's logs: paging through what is stored, and following the server-sent event
 * stream (`log` events, then one `end`) with reconnects that resume after the last seq seen.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { createParser } from 'eventsource-parser';
import { CliError, type ApiClient } from './client.js';

export interface LogLine {
  seq: number;
  /** epoch ms when the runner read the line */
  t: number;
  /** 'o' stdout, 'e' stderr, 's' system (runner messages) */
  s: 'o' | 'e' | 's';
  m: string;
}

export interface JobEnd {
  state: string;
  exitCode: number | null;
  error: string | null;
}

/** Writes a log line where it belongs: stdout lines to stdout, stderr and system lines to stderr. */
export function writeLine(l: LogLine, out: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream } = process): void {
  const text = l.m.endsWith('\n') ? l.m : l.m + '\n';
  if (l.s === 'o') out.stdout.write(text);
  else if (l.s === 'e') out.stderr.write(text);
  else out.stderr.write(`[runyard] ${text.replace(/^runyard: /, '')}`); // the runner's own lines already say who speaks
}

/** Pages through the stored logs (no waiting); returns the job's state when the last page was read. */
export async function readAllLogs(client: ApiClient, jobId: number, onLine: (l: LogLine) => void): Promise<{ state: string; finished: boolean }> {
  let after = 0;
  for (;;) {
    const page = await client.request<{ lines: LogLine[]; nextAfter: number; state: string; finished: boolean }>('GET', `/api/v1/jobs/${jobId}/logs?after=${after}&limit=1000`);
    for (const l of page.lines) onLine(l);
    if (!page.lines.length || page.nextAfter <= after) return { state: page.state, finished: page.finished };
    after = page.nextAfter;
  }
}

export interface FollowOptions {
  /** Resume after this seq (0: from the start). */
  after?: number;
  onLine: (l: LogLine) => void;
  /** Called when the stream dropped and is being re-opened (for a note on stderr): once per interruption, not per retry. */
  onReconnect?: (after: number, why: string) => void;
  /** Why the queued job waits (no runner can be started): once, and again when it changes. */
  onWaiting?: (reason: string) => void;
  /** Give up when the server stays unreachable this long (default 5 minutes). */
  giveUpAfterMs?: number;
  sleep?: (ms: number) => Promise<unknown>;
  now?: () => number;
}

/**
 * Follows a job's logs until it ends and returns how it ended. A stream that drops before the
 * `end` event is re-opened with `after=<last seq>`, so no line is printed twice or skipped.
 * Errors the server means (404, 401, 403, bad input) end the follow at once.
 */
export async function followLogs(client: ApiClient, jobId: number, opts: FollowOptions): Promise<JobEnd> {
  const sleep = opts.sleep ?? ((ms: number) => delay(ms));
  const now = opts.now ?? Date.now;
  const giveUpAfter = opts.giveUpAfterMs ?? 300_000;
  let after = opts.after ?? 0;
  let backoff = 100;
  let troubleSince: number | undefined;
  /** The current interruption was announced; a line (or the end) getting through clears it. */
  let announced = false;
  let lastWaiting: string | undefined;

  const retryOrThrow = async (why: string, err?: CliError) => {
    troubleSince ??= now();
    if (now() - troubleSince > giveUpAfter) throw err ?? new CliError(`error: lost the log stream of job ${jobId} and could not resume it for ${Math.round(giveUpAfter / 1000)}s (${why})`);
    if (!announced) opts.onReconnect?.(after, why);
    announced = true;
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 5000);
  };

  for (;;) {
    let res: Response;
    try {
      res = await client.fetch('GET', `/api/v1/jobs/${jobId}/logs?follow=1&after=${after}`, undefined, { headers: { accept: 'text/event-stream' } });
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      await retryOrThrow('server unreachable', err);
      continue;
    }
    if (!res.ok) {
      const err = await client.errorOf(res);
      if (res.status < 500 && res.status !== 429) throw err;
      await retryOrThrow(`server answered ${res.status}`, err);
      continue;
    }

    // Reachable again: only a server that stays unreachable ends the follow. (A silent job's
    // stream may be cut by proxies or the client's body timeout; that is not trouble.)
    troubleSince = undefined;
    let end: JobEnd | undefined;
    const parser = createParser({
      onEvent: (ev) => {
        if (ev.event === 'log') {
          const batch = parseData<{ seq: number; lines: Omit<LogLine, 'seq'>[] }>(ev.data);
          if (batch.seq <= after) return; // already printed before a reconnect
          for (const l of batch.lines) opts.onLine({ seq: batch.seq, ...l });
          after = batch.seq;
          backoff = 100;
          announced = false;
        } else if (ev.event === 'waiting') {
          const { reason } = parseData<{ reason: string }>(ev.data);
          // a reconnect replays the current reason: print it only when it is new
          if (reason !== lastWaiting) opts.onWaiting?.(reason);
          lastWaiting = reason;
        } else if (ev.event === 'end') {
          end = parseData<JobEnd>(ev.data);
        }
      },
    });
    let why = 'stream closed before the job ended';
    try {
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      while (!end) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
      if (end) await reader.cancel().catch(() => {});
    } catch (err) {
      if (err instanceof CliError) throw err;
      why = `stream broke: ${(err as any).cause?.code ?? (err as Error).message}`;
    }
    if (end) return end;
    await retryOrThrow(why);
  }
}

function parseData<T>(data: string): T {
  try {
    return JSON.parse(data) as T;
  } catch {
    throw new CliError(`error: the server sent a log event that is not JSON (${JSON.stringify(data.slice(0, 80))}); is it a runyard server of the same version?`);
  }
}

/** The process exit code for a finished job, and a note for stderr when it did not succeed. */
export function exitFor(jobId: number, end: JobEnd): { code: number; note?: string } {
  if (end.state === 'succeeded') return { code: 0 };
  if (end.state === 'failed' && end.exitCode !== null && end.exitCode !== 0) {
    const reason = end.error && !end.error.includes(`exit code ${end.exitCode}`) ? `: ${end.error}` : '';
    // Exit codes are 0-255 on POSIX; a negative or larger code still has to mean failure.
    const code = end.exitCode > 0 && end.exitCode < 256 ? end.exitCode : 1;
    return { code, note: `job ${jobId} failed with exit code ${end.exitCode}${reason}` };
  }
  return { code: 1, note: `job ${jobId} ${end.state.replace('_', ' ')}${end.error ? `: ${end.error}` : ''}` };
}
