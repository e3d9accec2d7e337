/*
 * Shared pieces of the client commands: the API client from the global options, argument
 * checks that fail with exit code 2 before anything reaches the server, and human output
 * (aligned tables, relative ages, sizes).
 */
import type { Command } from 'commander';
import { parseDuration } from '../lib/duration.js';
import { ApiClient, CliError } from './client.js';
import { formatTable } from '../lib/table.js';

export { formatTable };

/** The API client for a command, from the global --server / --token (or what `up` left behind). */
export function clientOf(cmd: Command): ApiClient {
  const g = cmd.optsWithGlobals<{ server?: string; token?: string }>();
  return new ApiClient({ server: g.server, token: g.token });
}

/** Commander's collector for repeatable options (`--env A=1 --env B=2`). */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export const bad = (message: string) => new CliError(`error: ${message}`, 2);

/** Adds a hint to a 404 from the server (what to list to find the right name). */
export async function hint404<T>(p: Promise<T>, hint: string): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof CliError && err.status === 404) throw new CliError(`${err.message}\nhint: ${hint}`, err.exitCode, err.status);
    throw err;
  }
}

// ---- argument checks (exit code 2) ----

export function parseJobId(raw: string): number {
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < 1) throw bad(`job ID must be a positive integer, got ${JSON.stringify(raw)} (see \`runyard jobs list\`)`);
  return Number(raw);
}

export function parsePositiveInt(raw: string | undefined, what: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < 1 || Number(raw) > max) throw bad(`${what} must be an integer from 1 to ${max}, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

export const DURATION_FORMS = '30s, 10m, 1h, 1h30m or 250ms';

/**
 * A duration flag. A bare number is refused: the API reads it as milliseconds, which is never
 * what `--timeout 5` meant; the API and the config keep their forms.
 */
export function parseDurationArg(raw: string | undefined, what: string): string | undefined {
  if (raw === undefined) return undefined;
  durationMsArg(raw, what);
  return raw;
}

/** A duration flag in milliseconds; exit 2 naming the flag and the forms when it is not one. */
export function durationMsArg(raw: string, what: string, min = 1): number {
  if (/^\s*\d+(\.\d+)?\s*$/.test(raw)) throw bad(`${what} needs a unit: ${raw.trim()} alone is ambiguous; write e.g. ${raw.trim()}s or ${raw.trim()}m (forms: ${DURATION_FORMS})`);
  const ms = parseDuration(raw);
  if (ms === undefined || ms < min) throw bad(`${what} must be a duration like ${DURATION_FORMS}, got ${JSON.stringify(raw)}`);
  return ms;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `K=V` pairs into a record; the name must be a valid environment variable name. */
export function parseKeyValues(pairs: string[] | undefined, option: string): Record<string, string> | undefined {
  if (!pairs?.length) return undefined;
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq < 0) throw bad(`${option} must be NAME=VALUE, got ${JSON.stringify(p)}`);
    const name = p.slice(0, eq);
    if (!ENV_NAME.test(name)) throw bad(`${option} name ${JSON.stringify(name)} is not a valid environment variable name (letters, digits and _, not starting with a digit)`);
    out[name] = p.slice(eq + 1);
  }
  return out;
}

/** A comma-separated list whose items must each be one of `allowed`. */
export function parseEnumList(raw: string | undefined, what: string, allowed: readonly string[]): string[] | undefined {
  if (raw === undefined) return undefined;
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const wrong = items.filter((s) => !allowed.includes(s));
  if (!items.length || wrong.length) throw bad(`${what} must be one or more of ${allowed.join(', ')} (comma-separated), got ${JSON.stringify(raw)}`);
  return items;
}

export const SLUG = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function parsePoolName(raw: string | undefined, what = 'pool'): string | undefined {
  if (raw === undefined) return undefined;
  if (!SLUG.test(raw)) throw bad(`${what} must be a pool name (lowercase letters, digits and dashes), got ${JSON.stringify(raw)}`);
  return raw;
}

// ---- output ----

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Prints a table, or `empty` when there are no rows. */
export function printTable(headers: string[], rows: (string | number | null | undefined)[][], empty: string): void {
  process.stdout.write(rows.length ? formatTable(headers, rows) : empty + '\n');
}

/** Key/value lines for `show` commands; empty values are left out. */
export function printFields(fields: [string, unknown][]): void {
  const shown = fields.filter(([, v]) => v !== undefined && v !== null && v !== '');
  const width = Math.max(...shown.map(([k]) => k.length)) + 1;
  for (const [k, v] of shown) {
    const text = String(v);
    // a multi-line value (a list) starts on the next line
    process.stdout.write(text.startsWith('\n') ? `${k}:${text}\n` : `${(k + ':').padEnd(width)} ${text}\n`);
  }
}

/** "now", "42s", "3m", "5h", "2d" — the age of `at` relative to `now`; "in 3h" for the future. */
export function age(at: string | Date | null | undefined, now = Date.now()): string {
  if (!at) return '-';
  const ms = now - new Date(at).getTime();
  if (Number.isNaN(ms)) return '-';
  const abs = Math.abs(ms);
  const text =
    abs < 1000 ? 'now' : abs < 60_000 ? `${Math.floor(abs / 1000)}s` : abs < 3_600_000 ? `${Math.floor(abs / 60_000)}m` : abs < 86_400_000 ? `${Math.floor(abs / 3_600_000)}h` : `${Math.floor(abs / 86_400_000)}d`;
  if (text === 'now') return text;
  return ms >= 0 ? `${text} ago` : `in ${text}`;
}

/** Like `age` but without " ago": for AGE columns. */
export const ageShort = (at: string | Date | null | undefined, now = Date.now()) => age(at, now).replace(/ ago$/, '');

/** A timestamp and how long ago it was: "2024-05-01T10:00:00.000Z (3m ago)". */
export const when = (at: string | Date | null | undefined) => (at ? `${new Date(at).toISOString()} (${age(at)})` : undefined);

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

export function formatMs(ms: number | null | undefined): string | undefined {
  if (ms === null || ms === undefined) return undefined;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

export function truncate(s: string, max: number): string {
  const one = s.replace(/\s*\n\s*/g, ' ⏎ ');
  return one.length > max ? one.slice(0, max - 1) + '…' : one;
}

/** An event's state change: "queued → claimed", or the one state it names. */
export function change(e: { fromState: string | null; toState: string | null }): string | undefined {
  if (e.fromState && e.toState) return e.fromState === e.toState ? e.toState : `${e.fromState} → ${e.toState}`;
  return e.toState ?? e.fromState ?? undefined;
}
