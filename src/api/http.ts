import type { Context, MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { InvalidError, RunyardError, TooLargeError } from '../lib/errors.js';
import { formatPath } from '../config/load.js';
import type { AppContext } from '../app/context.js';
import { StoreUnavailableError, storeError } from '../store/store-errors.js';
import type { Principal } from './auth.js';

export type Env = { Variables: { principal: Principal } };

export function errorBody(code: string, message: string, field?: string) {
  return { error: { code, message, ...(field ? { field } : {}) } };
}

const storeWarnings = { at: 0, refused: 0 };

/** Maps typed errors to statuses; anything else is a 500 with no stack or detail leaked. */
export function toErrorResponse(err: unknown, c: Context, log: AppContext['log']) {
  err = storeError(err);
  if (err instanceof StoreUnavailableError) {
    // expected during a database restart: a warning now and then (not one per request), and the
    // client is told when to retry
    const now = Date.now();
    storeWarnings.refused++;
    if (now - storeWarnings.at > 5000) {
      log.warn({ path: c.req.path, reason: err.message, refused: storeWarnings.refused }, 'store unavailable: answering 503');
      storeWarnings.at = now;
      storeWarnings.refused = 0;
    }
    c.header('Retry-After', String(err.retryAfter));
  }
  if (err instanceof RunyardError) return c.json(errorBody(err.code, err.message, err.field), err.status as any);
  // A value the schemas let through but PostgreSQL cannot store (SQLSTATE class 22, data
  // exception: out of range, bad character) is the caller's input, not a server fault.
  if (typeof (err as any)?.code === 'string' && /^22[0-9A-Z]{3}$/.test((err as any).code) && typeof (err as any).severity === 'string') {
    log.warn({ path: c.req.path, code: (err as any).code, reason: (err as Error).message }, 'request value refused by the store');
    return c.json(errorBody('invalid', `a value in the request cannot be stored: ${(err as Error).message}`, 'body'), 400);
  }
  const status = (err as any)?.status ?? (err as any)?.getResponse?.()?.status;
  if (status === 413) return c.json(errorBody('too_large', 'request body too large'), 413);
  log.error({ err, path: c.req.path }, 'unhandled error in request');
  return c.json(errorBody('internal', 'internal server error'), 500);
}

/** Reads and validates a JSON body; a bad one is a 400 naming the field. */
export async function readJson<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  const type = c.req.header('content-type') ?? '';
  if (!type.includes('application/json')) throw new InvalidError('request body must be JSON (Content-Type: application/json)', 'body');
  let raw: unknown;
  try {
    raw = JSON.parse(await c.req.text());
  } catch (err) {
    if (err instanceof SyntaxError) throw new InvalidError(`malformed JSON: ${err.message}`, 'body');
    throw err;
  }
  return validate(schema, raw, 'body');
}

export function validate<S extends z.ZodType>(schema: S, raw: unknown, where: string): z.output<S> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    // An unknown key is reported at its own path ("jobs[0].comand"), not at the object holding it.
    const pathOf = (i: z.core.$ZodIssue) => (i.code === 'unrecognized_keys' ? [...i.path, i.keys[0]!] : i.path);
    const fieldOf = (i: z.core.$ZodIssue) => (pathOf(i).length ? formatPath(pathOf(i)) : where);
    const field = fieldOf(r.error.issues[0]!);
    const all = r.error.issues.map((i) => `${fieldOf(i)}: ${i.message}`).join('; ');
    // Well-formed but semantically wrong values (unknown pool etc.) use UnprocessableError elsewhere.
    throw new InvalidError(all, field);
  }
  return r.data;
}

export function query<S extends z.ZodType>(c: Context, schema: S): z.output<S> {
  return validate(schema, c.req.query(), 'query');
}

export const intParam = (name: string) =>
  z.string().regex(/^\d{1,15}$/, `${name} must be a positive integer`).transform(Number);

export const uuid = z.uuid('must be a UUID');

export function parseId(c: Context, name = 'id'): number {
  const raw = c.req.param(name) ?? '';
  if (!/^\d{1,15}$/.test(raw)) throw new InvalidError(`${name} must be a positive integer, got ${JSON.stringify(raw)}`, name);
  return Number(raw);
}

export function parseUuid(c: Context, name = 'id'): string {
  const raw = c.req.param(name) ?? '';
  if (!uuid.safeParse(raw).success) throw new InvalidError(`${name} must be a UUID, got ${JSON.stringify(raw.slice(0, 64))}`, name);
  return raw.toLowerCase();
}

/** Refuses bodies over `max` bytes before reading them (Content-Length) and while reading. */
export function bodyLimit(max: number): MiddlewareHandler {
  return async (c, next) => {
    const len = Number(c.req.header('content-length') ?? 0);
    if (len > max) throw new TooLargeError(`request body of ${len} bytes exceeds the limit of ${max} bytes`, 'body');
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && !c.req.header('content-length') && c.req.raw.body) {
      const buf = await readLimited(c.req.raw.body, max);
      c.req.raw = new Request(c.req.raw, { body: buf as any, duplex: 'half' } as any);
      (c.req as any).bodyCache = {};
    }
    await next();
  };
}

async function readLimited(body: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of body as any as AsyncIterable<Uint8Array>) {
    total += chunk.byteLength;
    if (total > max) throw new TooLargeError(`request body exceeds the limit of ${max} bytes`, 'body');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

