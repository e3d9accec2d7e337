// @ts-check
/**
 * The runyard HTTP API as the dashboard uses it. Every call carries the admin token from
 * sessionStorage in the Authorization header; server-sent events are read through fetch
 * (EventSource cannot send that header). Errors become ApiError with the API's own message.
 */
import { syncClock } from './format.js';

const TOKEN_KEY = 'runyard.token';
// Relative, so the dashboard also works behind a reverse proxy under a path prefix.
const BASE = new URL('api/v1/', document.baseURI);

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message @param {string} [field] */
  constructor(status, code, message, field) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** @type {((err: ApiError) => void) | undefined} */
let onUnauthorized;

export const auth = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  /** @param {string} token */
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
  /** Called once for any 401: the token was invalid, revoked or expired. @param {(err: ApiError) => void} fn */
  onUnauthorized(fn) {
    onUnauthorized = fn;
  },
};

/**
 * @param {string} path e.g. "jobs?limit=50"
 * @param {{method?: string, body?: unknown, signal?: AbortSignal, token?: string, accept?: string}} [opts]
 */
async function send(path, opts = {}) {
  const token = opts.token ?? auth.token;
  /** @type {Record<string, string>} */
  const headers = { accept: opts.accept ?? 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(new URL(path.replace(/^\//, ''), BASE), {
      method: opts.method ?? 'GET',
      headers,
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      signal: opts.signal,
      cache: 'no-store',
    });
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    throw new ApiError(0, 'network', 'Cannot reach the runyard server. Is `runyard up` still running?');
  }
  syncClock(res.headers.get('date'));
  if (!res.ok) {
    const err = await toApiError(res);
    // A token given explicitly (the login form) is judged by its caller, not as a lost session.
    if (res.status === 401 && opts.token === undefined) onUnauthorized?.(err);
    throw err;
  }
  return res;
}

/** @param {Response} res */
async function toApiError(res) {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  let field;
  try {
    const body = await res.json();
    if (body?.error) ({ code = code, message = message, field } = body.error);
  } catch {
    // not JSON (a proxy's error page): keep the status text
  }
  return new ApiError(res.status, code, message, field);
}

export const api = {
  /** @param {string} path @param {{signal?: AbortSignal, token?: string}} [opts] */
  async get(path, opts) {
    return (await send(path, opts)).json();
  },
  /** @param {string} path @param {unknown} [body] @param {{signal?: AbortSignal}} [opts] */
  async post(path, body, opts) {
    return (await send(path, { ...opts, method: 'POST', body: body ?? {} })).json();
  },
  /** @param {string} path @param {{signal?: AbortSignal}} [opts] */
  async del(path, opts) {
    return (await send(path, { ...opts, method: 'DELETE' })).json();
  },

  /**
   * Reads a server-sent-events endpoint until it ends or `signal` aborts. Resolves when the
   * server closes the stream; rejects with ApiError when it refuses to open it.
   * @param {string} path
   * @param {{signal: AbortSignal, onOpen?: () => void, onEvent: (event: string, data: any, id: string) => void}} opts
   */
  async stream(path, opts) {
    const res = await send(path, { signal: opts.signal, accept: 'text/event-stream' });
    if (!res.body) throw new ApiError(0, 'network', 'the server sent no event stream');
    opts.onOpen?.();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = sseParser(opts.onEvent);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        parser(value);
      }
    } catch (err) {
      if (opts.signal.aborted) return;
      throw new ApiError(0, 'network', 'the event stream was interrupted');
    } finally {
      reader.releaseLock();
    }
  },
};

/**
 * An incremental text/event-stream parser (the WHATWG format: event, data, id; comments ignored).
 * @param {(event: string, data: any, id: string) => void} emit
 */
export function sseParser(emit) {
  let buf = '';
  let event = '';
  let data = /** @type {string[]} */ ([]);
  let id = '';
  return (/** @type {string} */ chunk) => {
    buf += chunk;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      if (buf[nl] === '\r' && nl === buf.length - 1) break; // maybe half of a \r\n: wait for more
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (data.length) {
          const text = data.join('\n');
          let parsed;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = text;
          }
          emit(event || 'message', parsed, id);
        }
        event = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (name === 'event') event = value;
      else if (name === 'data') data.push(value);
      else if (name === 'id') id = value;
    }
  };
}
