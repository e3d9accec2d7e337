/*
 * HTTP helpers for API tests: a server-sent-events reader, raw (chunked) uploads, a minimal
 * runner speaking the runner protocol with fetch, and a snapshot of what the store holds.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { generateRunnerKeys, openSealed, type RunnerKeyPair } from '../../src/lib/sealed.js';
import type { Queryable } from '../../src/store/db.js';
import type { TestServer } from './server.js';

export interface SseStream {
  status: number;
  contentType: string | null;
  /** The next event, or a rejection after `timeoutMs`. */
  next(timeoutMs?: number): Promise<EventSourceMessage>;
  /** Events until (and including) the first named `name`. */
  until(name: string, timeoutMs?: number): Promise<EventSourceMessage[]>;
  close(): void;
}

export async function openSse(url: string, token: string): Promise<SseStream> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }, signal: abort.signal });
  const queue: EventSourceMessage[] = [];
  let waiter: (() => void) | undefined;
  let ended = false;
  const parser = createParser({
    onEvent: (e) => {
      queue.push(e);
      waiter?.();
    },
  });
  void (async () => {
    try {
      const decoder = new TextDecoder();
      for await (const chunk of res.body as any as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }));
    } catch {
      // aborted by close()
    } finally {
      ended = true;
      waiter?.();
    }
  })();
  const stream: SseStream = {
    status: res.status,
    contentType: res.headers.get('content-type'),
    async next(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (queue.length === 0) {
        if (ended) throw new Error('event stream ended');
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no event within ${timeoutMs}ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiter = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        waiter = undefined;
      }
      return queue.shift()!;
    },
    async until(name, timeoutMs = 10_000) {
      const seen: EventSourceMessage[] = [];
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const e = await stream.next(Math.max(1, deadline - Date.now()));
        seen.push(e);
        if (e.event === name) return seen;
      }
    },
    close: () => abort.abort(),
  };
  return stream;
}

/**
 * Sends `body` with Transfer-Encoding: chunked (no Content-Length), in 16 KiB chunks. Resolves
 * with the response, even when the server answers before it has read the whole body.
 */
export function sendChunked(url: string, opts: { method?: string; token: string; body: Buffer; contentType?: string }): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: opts.method ?? 'POST',
      headers: { authorization: `Bearer ${opts.token}`, 'content-type': opts.contentType ?? 'application/json', 'transfer-encoding': 'chunked' },
    });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        let body: any = text;
        try {
          body = JSON.parse(text);
        } catch {
          // keep the text
        }
        resolve({ status: res.statusCode!, body });
      });
    });
    // The server may close the connection while we still write: only fail when no answer came.
    req.on('error', (err) => {
      if (!answered) setTimeout(() => (answered ? undefined : reject(err)), 200);
    });
    let offset = 0;
    const writeMore = () => {
      while (offset < opts.body.length) {
        const chunk = opts.body.subarray(offset, offset + 16_384);
        offset += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', writeMore);
      }
      req.end();
    };
    writeMore();
  });
}

/** Row counts and revocations: what "changed nothing" is checked against. Audit lines are left out. */
export async function storeSnapshot(db: Queryable): Promise<Record<string, unknown>> {
  const one = async (sql: string) => (await db.query(sql))[0];
  return {
    jobs: await one(`select count(*)::int as n, coalesce(sum(hashtext(state || attempt || cancel_requested::text)), 0)::bigint as h from jobs`),
    pools: await one(`select count(*)::int as n, coalesce(string_agg(name || config_hash || config::text, ',' order by name), '') as c from pools`),
    tokens: await one(`select count(*)::int as n, count(revoked_at)::int as revoked from tokens`),
    runners: await one(`select count(*)::int as n, coalesce(string_agg(id::text || state, ',' order by id), '') as s from runners`),
    logs: await one(`select count(*)::int as n from job_logs`),
    events: await one(`select count(*)::int as n from events where kind <> 'auth'`),
  };
}

/** Refused calls in the audit trail: repeats are one row with a count (src/app/refusal-audit.ts). */
export async function countAuthEvents(db: Queryable): Promise<number> {
  return (await db.query<{ n: number }>(`select coalesce(sum(coalesce((data->>'count')::int, 1)), 0)::int as n from events where kind = 'auth'`))[0]!.n;
}

/** A runner that speaks the runner protocol over HTTP, step by step, as the agent would. */
export class ProtocolRunner {
  readonly id = randomUUID();
  readonly keys: RunnerKeyPair = generateRunnerKeys();
  credential = '';
  private seq = new Map<number, number>();

  constructor(private t: TestServer) {}

  /** Creates a registration token for `pool` with the admin token, and registers with it. */
  async register(pool = 'local'): Promise<any> {
    const tok = await this.t.api('POST', '/api/v1/tokens', { pool });
    if (tok.status !== 201) throw new Error(`token: ${tok.status} ${JSON.stringify(tok.body)}`);
    const r = await this.t.api('POST', '/api/v1/runners/register', { id: this.id, name: `runner-${this.id.slice(0, 8)}`, version: 'test', publicKey: this.keys.publicKey }, { token: tok.body.secret });
    if (r.status !== 201) throw new Error(`register: ${r.status} ${JSON.stringify(r.body)}`);
    this.credential = openSealed(this.keys.privateKey, r.body.sealedCredential).credential!;
    return r.body;
  }

  call(method: string, path: string, body?: unknown) {
    return this.t.api(method, path, body, { token: this.credential });
  }

  /** Claims until it holds `max` jobs or `timeoutMs` passes (claims are long polls). */
  async claim(max = 1, timeoutMs = 10_000): Promise<any[]> {
    const deadline = Date.now() + timeoutMs;
    const jobs: any[] = [];
    while (jobs.length < max && Date.now() < deadline) {
      const r = await this.call('POST', `/api/v1/runners/${this.id}/claim`, { max: max - jobs.length, waitMs: Math.min(2000, Math.max(0, deadline - Date.now())) });
      if (r.status !== 200) throw new Error(`claim: ${r.status} ${JSON.stringify(r.body)}`);
      jobs.push(...r.body.jobs);
    }
    return jobs;
  }

  start(job: { id: number; attempt: number }) {
    return this.call('POST', `/api/v1/jobs/${job.id}/start`, { attempt: job.attempt });
  }

  log(job: { id: number; attempt: number }, ...messages: string[]) {
    const seq = (this.seq.get(job.id) ?? 0) + 1;
    this.seq.set(job.id, seq);
    return this.call('POST', `/api/v1/jobs/${job.id}/logs`, { attempt: job.attempt, seq, lines: messages.map((m) => ({ t: Date.now(), s: 'o', m })) });
  }

  result(job: { id: number; attempt: number }, exitCode: number | null, extra: Record<string, unknown> = {}) {
    return this.call('POST', `/api/v1/jobs/${job.id}/result`, { attempt: job.attempt, exitCode, ...extra });
  }

  /** Opens secrets the server sealed to this runner's public key. */
  openSecrets(job: { secrets: string | null }): Record<string, string> | null {
    return job.secrets ? openSealed(this.keys.privateKey, job.secrets) : null;
  }
}
