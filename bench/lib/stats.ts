/** Small statistics helpers: medians of runs, percentiles of samples, number formatting. */

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples. */
export function percentile(xs: number[] | Float64Array, p: number): number {
  if (xs.length === 0) return NaN;
  const s = Float64Array.from(xs).sort();
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank]!;
}

export function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

export function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** "12,345" for big numbers, 3 significant digits for small ones. */
export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || Number.isNaN(x)) return 'n/a';
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a === 0) return '0';
  return Number(x.toPrecision(digits)).toString();
}

export function fmtBytes(b: number): string {
  if (!Number.isFinite(b)) return 'n/a';
  const a = Math.abs(b);
  if (a >= 1024 ** 3) return `${fmt(b / 1024 ** 3)} GiB`;
  if (a >= 1024 ** 2) return `${fmt(b / 1024 ** 2)} MiB`;
  if (a >= 1024) return `${fmt(b / 1024)} KiB`;
  return `${Math.round(b)} B`;
}

/** A compact summary of a latency sample in ms. */
export function latencySummary(ms: number[]): { n: number; p50: number; p90: number; p99: number; max: number; mean: number } {
  return { n: ms.length, p50: percentile(ms, 50), p90: percentile(ms, 90), p99: percentile(ms, 99), max: ms.length ? ms.reduce((a, b) => (b > a ? b : a), -Infinity) : NaN, mean: mean(ms) };
}
