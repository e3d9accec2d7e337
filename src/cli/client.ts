import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** A CLI error with its exit code: 2 for bad input, 1 for everything else. */
export class CliError extends Error {
  /** `status`: the HTTP status when the error came from the server. */
  constructor(message: string, readonly exitCode = 1, readonly status?: number) {
    super(message);
  }
}

/** What to try next after an API error the user can act on. */
function hintFor(status: number): string {
  if (status === 401) return '\nhint: pass --token or set RUNYARD_TOKEN to the admin token printed by `runyard up` (saved in .runyard/admin-token where it runs; run the CLI there or below it and it is found)';
  if (status === 403) return '\nhint: this needs the admin token (printed by `runyard up`), not a registration or runner token';
  return '';
}

export interface ClientOptions {
  server?: string;
  token?: string;
  dataDir?: string;
}

/**
 * Where `runyard up` leaves its address and admin token for the CLI on the same machine: the
 * data dir when named, else the nearest `.runyard` from here up (the CLI works in any
 * subdirectory of where `up` runs), then ~/.runyard.
 */
export function localServerFiles(dataDir?: string): string[] {
  const named = dataDir ?? process.env.RUNYARD_DATA_DIR;
  const dirs = named ? [resolve(named)] : nearestDataDir(process.cwd());
  return [...dirs, resolve(homedir(), '.runyard')];
}

function nearestDataDir(from: string): string[] {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const d = join(dir, '.runyard');
    if (existsSync(join(d, 'server.json')) || existsSync(join(d, 'admin-token'))) return [d];
    if (dirname(dir) === dir) return [];
  }
}

export function resolveConnection(opts: ClientOptions): { server: string; token: string | undefined } {
  let server = opts.server ?? process.env.RUNYARD_SERVER;
  let token = opts.token ?? process.env.RUNYARD_TOKEN;
  for (const dir of localServerFiles(opts.dataDir)) {
    if (!server && existsSync(join(dir, 'server.json'))) {
      try {
        server = JSON.parse(readFileSync(join(dir, 'server.json'), 'utf8')).url;
      } catch {
        // unreadable: fall through to the next place
      }
    }
    if (!token && existsSync(join(dir, 'admin-token'))) token = readFileSync(join(dir, 'admin-token'), 'utf8').trim();
  }
  return { server: (server ?? 'http://127.0.0.1:8080').replace(/\/+$/, ''), token };
}

export interface RequestOptions {
  signal?: AbortSignal;
  raw?: BodyInit;
  contentType?: string;
  headers?: Record<string, string>;
}

/** A small JSON client over fetch; API errors become CliErrors carrying the server's message. */
export class ApiClient {
  readonly server: string;
  readonly token: string | undefined;

  constructor(opts: ClientOptions = {}) {
    const c = resolveConnection(opts);
    this.server = c.server;
    this.token = c.token;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...extra };
  }

  async request<T = any>(method: string, path: string, body?: unknown, init: RequestOptions = {}): Promise<T> {
    const res = await this.fetch(method, path, body, init);
    if (!res.ok) throw await this.errorOf(res);
    const text = await res.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new CliError(`error: the server at ${this.server} answered ${method} ${path} with something that is not JSON; is it a runyard server?`);
    }
    return json as T;
  }

  /** Turns a failed response into a CliError naming the server's message, field and a hint. */
  async errorOf(res: Response): Promise<CliError> {
    const text = await res.text().catch(() => '');
    let e: { message?: string; field?: string } = {};
    try {
      e = (text ? JSON.parse(text) : {}).error ?? {};
    } catch {
      e = { message: text.slice(0, 200) || undefined };
    }
    const field = e.field ? ` (field: ${e.field})` : '';
    const badInput = res.status >= 400 && res.status < 500 && res.status !== 401 && res.status !== 403 && res.status !== 404;
    return new CliError(`error: ${e.message ?? `${res.status} ${res.statusText}`}${field}${hintFor(res.status)}`, badInput ? 2 : 1, res.status);
  }

  async fetch(method: string, path: string, body?: unknown, init: RequestOptions = {}): Promise<Response> {
    try {
      return await fetch(this.server + path, {
        method,
        headers: this.headers({ ...(body !== undefined || init.raw ? { 'content-type': init.contentType ?? 'application/json' } : {}), ...init.headers }),
        body: init.raw ?? (body !== undefined ? JSON.stringify(body) : undefined),
        signal: init.signal,
        duplex: 'half',
      } as RequestInit);
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      throw new CliError(`error: cannot reach the runyard server at ${this.server} (${(err as any).cause?.code ?? (err as any).cause?.message ?? (err as Error).message})\nhint: start it with \`runyard up\`, or pass --server / set RUNYARD_SERVER`);
    }
  }
}
