/*
 * What the simulator knows of a pool's provider: how long a runner takes from launch to
 * registration (a distribution, configured or fitted from a store), how fast its API lets
 * runners be started (a token bucket), how often a start fails, and what a runner-hour costs.
 */
import { z } from 'zod';
import { duration } from '../config/schema.js';
import { parseDuration } from '../lib/duration.js';
import type { Prng } from './prng.js';

export const latencySchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('fixed'), value: duration }),
  z.strictObject({ kind: z.literal('uniform'), min: duration, max: duration }),
  /** median and 95th percentile: the two figures people know of their cold starts */
  z.strictObject({ kind: z.literal('lognormal'), median: duration, p95: duration }),
  /** observed start latencies in ms, drawn from uniformly (what --fit gives) */
  z.strictObject({ kind: z.literal('empirical'), samples: z.array(z.number().min(0)).min(1) }),
]);
export type Latency = z.output<typeof latencySchema>;

export const poolModelSchema = z.strictObject({
  startLatency: latencySchema.optional(),
  /** provider API limit on starts: a token bucket */
  apiRate: z.strictObject({ perSecond: z.number().positive(), burst: z.number().int().min(1).default(1) }).optional(),
  /** share of starts the provider refuses (0..1): they count toward the pool's start backoff */
  startFailureRate: z.number().min(0).max(1).optional(),
  /** price of one runner-hour; default from the pool's class in costPerHour */
  costPerHour: z.number().min(0).optional(),
  /** from a job's result to the runner's next claim (the agent's round trip) */
  claimGap: duration.optional(),
});
export type PoolModel = z.output<typeof poolModelSchema>;

/** What a store tells of its provider: start latencies, and the claim gap. */
export interface Fitted {
  startLatency?: Latency;
  claimGap?: number;
}

export const DEFAULT_LATENCY: Latency = { kind: 'fixed', value: 2_000 };

/** "20s" (fixed), "uniform:5s:30s", "lognormal:20s:60s" (median, p95): the --start-latency form. */
export function parseLatency(s: string): Latency | string {
  const [kind, ...args] = s.includes(':') ? s.split(':') : ['fixed', s];
  const ms = args.map((a) => parseDuration(a));
  if (ms.some((m) => m === undefined)) return `invalid duration in ${JSON.stringify(s)}: use 30s, 5m, 1h or milliseconds`;
  const [a, b] = ms as number[];
  if (kind === 'fixed' && args.length === 1) return { kind, value: a! };
  if (kind === 'uniform' && args.length === 2 && a! <= b!) return { kind, min: a!, max: b! };
  if (kind === 'lognormal' && args.length === 2 && a! > 0 && a! <= b!) return { kind, median: a!, p95: b! };
  return `invalid start latency ${JSON.stringify(s)}: use 20s, uniform:MIN:MAX or lognormal:MEDIAN:P95 (MIN <= MAX, MEDIAN <= P95)`;
}

/** One start latency in ms. */
export function sampleLatency(l: Latency, rng: Prng): number {
  switch (l.kind) {
    case 'fixed':
      return l.value;
    case 'uniform':
      return l.min + (l.max - l.min) * rng.next();
    case 'lognormal': {
      // p95 = median * e^(1.645 sigma)
      const sigma = l.p95 > l.median ? Math.log(l.p95 / l.median) / 1.6449 : 0;
      return l.median * Math.exp(sigma * rng.normal());
    }
    case 'empirical':
      return l.samples[Math.floor(rng.next() * l.samples.length)]!;
  }
}

export function describeLatency(l: Latency): string {
  const s = (ms: number) => (ms < 10_000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(1)}s`);
  switch (l.kind) {
    case 'fixed':
      return s(l.value);
    case 'uniform':
      return `uniform ${s(l.min)}–${s(l.max)}`;
    case 'lognormal':
      return `lognormal median ${s(l.median)}, p95 ${s(l.p95)}`;
    case 'empirical': {
      const sorted = [...l.samples].sort((a, b) => a - b);
      return `fitted from ${sorted.length} starts: median ${s(sorted[Math.floor(sorted.length / 2)]!)}, max ${s(sorted[sorted.length - 1]!)}`;
    }
  }
}
