/*
 * The checks of src/lib/validation.ts that need no zod: what cannot be stored in PostgreSQL text
 * or jsonb, and JSON values too deep or too large. The agent uses them on a job's output, and its
 * bundle stays without zod (which alone took ~730 KB of it and a good part of its start-up).
 */

/** Free-form JSON (payload, output): nesting and size caps. */
export const JSON_MAX_DEPTH = 64;
export const JSON_MAX_BYTES = 512 * 1024;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why a string cannot be stored as text or jsonb; undefined when it can. */
export function stringProblem(s: string): string | undefined {
  if (s.includes('\u0000')) return 'must not contain NUL (\\u0000) characters';
  if (LONE_SURROGATE.test(s)) return 'must not contain lone surrogates (invalid UTF-16 such as \\ud800)';
  return undefined;
}

/**
 * What is wrong with a JSON value, walked without recursion (a value nested 100,000 deep must
 * not overflow the stack): too deep, too large, or a string (or key) that cannot be stored.
 * `path` is where, relative to the value. `strings: false` leaves strings to the caller (the
 * agent replaces bad characters rather than refusing a job's output).
 */
export function jsonProblem(
  value: unknown,
  { maxDepth = JSON_MAX_DEPTH, maxBytes = JSON_MAX_BYTES, strings = true }: { maxDepth?: number; maxBytes?: number; strings?: boolean } = {},
): { path: (string | number)[]; message: string } | undefined {
  const stack: { v: unknown; depth: number; path: (string | number)[] }[] = [{ v: value, depth: 0, path: [] }];
  let bytes = 0;
  while (stack.length) {
    const { v, depth, path } = stack.pop()!;
    if (typeof v === 'string') {
      bytes += v.length + 3; // about its JSON text: quotes and a comma
      const problem = strings ? stringProblem(v) : undefined;
      if (problem) return { path, message: problem };
    } else if (typeof v === 'number') {
      bytes += String(v).length + 1;
      if (!Number.isFinite(v)) return { path, message: 'must be a finite number' };
    } else if (v === null || typeof v === 'boolean') bytes += 6;
    else if (typeof v === 'object') {
      // reported at the value itself: the path down there would be as long as the nesting
      if (depth >= maxDepth) return { path: [], message: `is nested more than ${maxDepth} levels deep` };
      bytes += 2;
      if (Array.isArray(v)) v.forEach((item, i) => stack.push({ v: item, depth: depth + 1, path: [...path, i] }));
      else
        for (const [k, item] of Object.entries(v)) {
          const problem = strings ? stringProblem(k) : undefined;
          if (problem) return { path: [...path, k], message: `key ${problem}` };
          bytes += k.length + 4;
          stack.push({ v: item, depth: depth + 1, path: [...path, k] });
        }
    } else return { path, message: `is not a JSON value (${typeof v})` };
    if (bytes > maxBytes) return { path: [], message: `exceeds ${Math.round(maxBytes / 1024)} KiB` };
  }
  return undefined;
}
