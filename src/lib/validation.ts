/*
 * One validation rule per kind of value, shared by the API, the config file and the GitHub
 * webhook: whatever passes can be stored in PostgreSQL (text and jsonb hold neither NUL nor lone
 * surrogates; int and bigint columns have bounds), used as a timer (setTimeout's ceiling) and
 * added to "now" (a valid timestamp), and walked or serialised without blowing the stack.
 */
import { z } from 'zod';
import { parseDuration, formatDuration } from './duration.js';
import { jsonProblem, stringProblem } from './json-problem.js';

// zod-free, for the agent (its bundle does not load zod)
export { JSON_MAX_BYTES, JSON_MAX_DEPTH, jsonProblem, stringProblem } from './json-problem.js';

/** PostgreSQL `int` (int4) columns: attempts, log sequence numbers, exit codes. */
export const INT4_MAX = 2_147_483_647;
/** `bigint` columns read into JS numbers: exact only up to 2^53 - 1. */
export const INT8_MAX = Number.MAX_SAFE_INTEGER;
/** The longest delay setTimeout/setInterval honour (longer ones fire at once). */
export const MAX_TIMER_MS = 2_147_483_647;
/** The largest offset from now that stays a valid timestamp with margin: 100 years. */
export const MAX_OFFSET_MS = 100 * 365 * 86_400_000;
/** The latest epoch millisecond a JS Date holds. */
export const MAX_EPOCH_MS = 8.64e15;
const noBadChars = (v: string, ctx: z.RefinementCtx) => {
  const problem = stringProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
};

/** A string that fits a text column: length-bounded, no NUL, no lone surrogate. */
export function safeString(opts: { min?: number; max: number }) {
  return z
    .string()
    .min(opts.min ?? 0, opts.min ? `must be at least ${opts.min} character${opts.min === 1 ? '' : 's'}` : undefined)
    .max(opts.max, `must be at most ${opts.max} characters`)
    .superRefine(noBadChars);
}

/** An integer between min and max; max defaults to int4 (most columns), use INT8_MAX for bigint. */
export function boundedInt(min: number, max: number = INT4_MAX) {
  return z.number().int().min(min).max(max);
}

/** An integer given as a query string ("?after=12"), bounded like boundedInt. */
export function intQuery(min: number, max: number = INT4_MAX) {
  return z
    .string()
    .regex(/^\d{1,16}$/, 'must be a non-negative integer')
    .transform(Number)
    .pipe(boundedInt(min, max));
}

/**
 * A duration as "30s", "5m", "1h30m", "250ms" or milliseconds, parsed to milliseconds. `max`
 * defaults to the timer ceiling (about 24.8 days): longer values would fire at once as timers.
 * `positive` refuses 0 (a zero timeout would end every job or runner at once).
 */
export function duration(opts: { positive?: boolean; max?: number } = {}) {
  const max = opts.max ?? MAX_TIMER_MS;
  return z.union([z.number(), z.string().max(64, 'must be at most 64 characters')]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(v).slice(0, 80)}: use 30s, 5m, 1h or milliseconds` });
      return z.NEVER;
    }
    if (opts.positive && ms <= 0) {
      ctx.addIssue({ code: 'custom', message: 'must be positive' });
      return z.NEVER;
    }
    if (ms > max) {
      ctx.addIssue({ code: 'custom', message: `must be at most ${formatDuration(max)} (${max} ms), got ${JSON.stringify(v).slice(0, 80)}` });
      return z.NEVER;
    }
    return ms;
  });
}

/** Any JSON value that fits jsonb, nested at most `maxDepth` deep and about `maxBytes` large. */
export function jsonValue(opts: { maxDepth?: number; maxBytes?: number } = {}) {
  return z.unknown().superRefine((v, ctx) => {
    const problem = jsonProblem(v, opts);
    if (problem) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
  });
}

/** A routing label (jobs, pools, runners, GitHub `runs-on`). */
export const label = safeString({ min: 1, max: 128 });
/** At most 64 labels, as GitHub allows. */
export const MAX_LABELS = 64;
export const labels = z.array(label).max(MAX_LABELS, `at most ${MAX_LABELS} labels`);

export const envName = z
  .string()
  .max(256, 'must be at most 256 characters')
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name');
/** Environment variables (pool env, job env, job secrets). */
export const envMap = z.record(envName, safeString({ max: 65_536 }));

/** A name: pool, class size (1-63 lowercase letters, digits and dashes). */
export const slug = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a slug: 1-63 lowercase letters, digits and dashes');

/**
 * A GitHub repository as owner/name, by GitHub's rules: the owner is 1-39 letters, digits or
 * single dashes (not at either end); the name 1-100 letters, digits, `.`, `-`, `_`, and not `.`
 * or `..`. Nothing else (no `/`, `%`, `?`), so it can never steer an API path elsewhere.
 */
export const githubRepo = z
  .string()
  .max(140)
  .regex(/^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}\/[A-Za-z0-9._-]{1,100}$/, 'must be a GitHub repository as owner/name')
  .refine((s) => !/\/\.{1,2}$/.test(s), 'must be a GitHub repository as owner/name');
/** A GitHub user or organisation login. */
export const githubLogin = z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/, 'must be a GitHub login');
