/*
 * What a simulation is asked: the pools (from runyard.yaml, a pools file or a store), a provider
 * model per pool, the cost of a runner-hour by class, and the policies to compare: each one a set
 * of pool field overrides (`'*'` for every pool), validated by the same schema `runyard up` uses.
 *
 *   seed: 1
 *   slo: 30s
 *   startLatency: { kind: lognormal, median: 20s, p95: 60s }    # every pool, unless models say
 *   costPerHour: { default: 0.05, small: 0.02, medium: 0.04 }   # by pool class
 *   models: { ci: { apiRate: { perSecond: 2, burst: 5 }, startFailureRate: 0.01 } }
 *   policies:
 *     - name: current
 *     - name: warm-office-hours
 *       pools: { ci: { minIdleSchedule: { timeZone: Europe/Berlin, windows: [{ days: mon-fri, from: "08:00", to: "19:00", minIdle: 4 }] } } }
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { duration, poolSchema, type PoolConfig } from '../config/schema.js';
import { formatPath } from '../config/load.js';
import { DEFAULT_LATENCY, latencySchema, poolModelSchema, type Fitted } from './provider-model.js';
import type { SimPoolInput } from './simulation.js';

export class SpecError extends Error {}

const policySchema = z.strictObject({
  name: z.string().regex(/^[\w.:+-]{1,64}$/, 'must be 1-64 letters, digits and . _ : + -'),
  /** pool name (or '*') -> pool fields to override */
  pools: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
});
export type Policy = z.output<typeof policySchema>;

export const simSpecSchema = z.strictObject({
  seed: z.number().int().min(0).max(2 ** 32 - 1).default(1),
  tick: duration.default(10_000),
  slo: duration.default(30_000),
  warmup: duration.default(0),
  startLatency: latencySchema.optional(),
  apiRate: poolModelSchema.shape.apiRate,
  startFailureRate: z.number().min(0).max(1).default(0),
  claimGap: duration.optional(),
  costPerHour: z.record(z.string(), z.number().min(0)).default({}),
  models: z.record(z.string(), poolModelSchema).default({}),
  policies: z.array(policySchema).max(100).default([]),
});
export type SimSpec = z.output<typeof simSpecSchema>;

function readYaml(file: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SpecError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  try {
    return parseYaml(text);
  } catch (err) {
    throw new SpecError(`${file}: ${(err as Error).message.split('\n')[0]}`);
  }
}

const issues = (e: z.ZodError, prefix: string) => e.issues.map((i) => `${prefix}${i.path.length ? formatPath(i.path) : '(root)'}: ${i.message}`).join('; ');

export function readSpec(file: string | undefined): SimSpec {
  const raw = file ? (readYaml(file, 'simulation file') ?? {}) : {};
  const r = simSpecSchema.safeParse(raw);
  if (!r.success) throw new SpecError(`${file}: ${issues(r.error, '')}`);
  return r.data;
}

/** Pools as written: a runyard.yaml (its `pools`), a list of pools, or one pool. */
export function readPools(file: string): Record<string, unknown>[] {
  const v = readYaml(file, 'pools file') as any;
  const list = Array.isArray(v) ? v : v && typeof v === 'object' && 'pools' in v ? v.pools : v ? [v] : [];
  if (!Array.isArray(list) || list.length === 0) throw new SpecError(`${file} holds no pools: give a runyard.yaml, a list of pools or one pool`);
  list.forEach((p, i) => {
    const r = poolSchema.safeParse(p);
    if (!r.success) throw new SpecError(`${file}: pools[${i}]: ${issues(r.error, '')}`);
  });
  return list;
}

/** The pool configs of one policy: base fields, then the policy's '*' overrides, then its own. */
export function policyPools(base: Record<string, unknown>[], policy: Policy, where: string): PoolConfig[] {
  const names = new Set(base.map((p) => String(p.name)));
  for (const name of Object.keys(policy.pools))
    if (name !== '*' && !names.has(name)) throw new SpecError(`${where}.pools.${name}: no such pool; known: ${[...names].join(', ')}`);
  return base.map((p) => {
    const merged = { ...p, ...policy.pools['*'], ...policy.pools[String(p.name)], name: p.name };
    const r = poolSchema.safeParse(merged);
    if (!r.success) throw new SpecError(`${where}: pool ${String(p.name)}: ${issues(r.error, '')}`);
    return r.data;
  });
}

/** The simulator's view of each pool: its config and its provider model. */
export function simPools(pools: PoolConfig[], spec: SimSpec, fitted: Fitted = {}): SimPoolInput[] {
  return pools.map((config) => {
    const m = spec.models[config.name] ?? {};
    const cost = m.costPerHour ?? (config.class !== undefined ? spec.costPerHour[config.class] : undefined) ?? spec.costPerHour.default ?? 0;
    const apiRate = m.apiRate ?? spec.apiRate;
    return {
      config,
      latency: m.startLatency ?? spec.startLatency ?? fitted.startLatency ?? DEFAULT_LATENCY,
      claimGap: m.claimGap ?? spec.claimGap ?? fitted.claimGap ?? 0,
      ...(apiRate ? { apiRate } : {}),
      startFailureRate: m.startFailureRate ?? spec.startFailureRate,
      costPerHour: cost,
    };
  });
}

/** `--set minIdle=2 --set ci.idleTimeout=10m`: one policy's overrides (values parsed as YAML scalars). */
export function parseSets(sets: string[]): Policy['pools'] {
  const pools: Policy['pools'] = {};
  for (const s of sets) {
    const m = /^(?:([a-z0-9-]+|\*)\.)?([A-Za-z]+)=(.*)$/s.exec(s);
    if (!m) throw new SpecError(`--set ${s}: use FIELD=VALUE or POOL.FIELD=VALUE (e.g. minIdle=2, ci.idleTimeout=10m)`);
    const [, pool = '*', field, value] = m;
    let v: unknown;
    try {
      v = parseYaml(value!);
    } catch {
      v = value;
    }
    (pools[pool] ??= {})[field!] = v;
  }
  return pools;
}
