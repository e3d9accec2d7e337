import { RetryableError } from '../lib/errors.js';

/**
 * The store cannot be reached or refuses connections for now (PostgreSQL restarting, network
 * gone, PGlite closed). The API answers 503 with Retry-After; the caller tries again.
 */
export class StoreUnavailableError extends RetryableError {
  /** Seconds a client should wait before retrying. */
  readonly retryAfter = 2;
  constructor(cause: unknown) {
    super(`the store (database) is unavailable: ${describe(cause)}; try again shortly`, undefined, { cause });
  }
}

// SQLSTATE codes that mean "no usable connection", not "this statement is wrong":
// class 08 (connection exception), 57P01 admin shutdown (a restart), 57P02 crash shutdown,
// 57P03 cannot connect now (starting up or shutting down), 53300 too many connections.
const SQLSTATE = /^(08...|57P0[123]|53300)$/;
const NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED']);
// node-postgres and PGlite say these in words only (no code).
const MESSAGES = [
  /^Connection terminated/,
  /not queryable/,
  /^timeout exceeded when trying to connect/,
  /^Cannot use a pool after calling end/,
  /^PGlite is clos(ed|ing)/,
];

/** True when `err` says the database connection is gone or refused. */
export function isConnectionError(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  if (err instanceof StoreUnavailableError) return true;
  const e = err as { code?: unknown; message?: unknown; errors?: unknown };
  if (typeof e.code === 'string' && (SQLSTATE.test(e.code) || NODE_CODES.has(e.code))) return true;
  if (typeof e.message === 'string' && MESSAGES.some((m) => m.test(e.message as string))) return true;
  // net.connect to a name with several addresses fails with an AggregateError of each attempt.
  return Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every(isConnectionError);
}

/** `err` as a StoreUnavailableError when it is a connection error, unchanged otherwise. */
export function storeError(err: unknown): unknown {
  return isConnectionError(err) && !(err instanceof StoreUnavailableError) ? new StoreUnavailableError(err) : err;
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string; errors?: { message?: string }[] };
  const text = e?.message || e?.errors?.[0]?.message || String(err);
  return e?.code ? `${text} (${e.code})` : text;
}
