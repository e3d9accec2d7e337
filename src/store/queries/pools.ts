import { createHash } from 'node:crypto';
import type { Queryable } from '../db.js';
import type { ClassSize, PoolConfig } from '../../config/schema.js';
import { recordEvents } from './events.js';
import { NotFoundError } from '../../lib/errors.js';

export interface Pool {
  name: string;
  config: PoolConfig;
  configHash: string;
  source: string;
  createdAt: Date;
  updatedAt: Date;
  /** why its queued jobs wait, when the scheduler could not start a runner (null: nothing known) */
  waitingReason: string | null;
}

function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stable((v as any)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v ?? null);
}

/**
 * The hash of everything that shapes a runner. Scaling knobs (minIdle, maxRunners, timeouts)
 * are left out: changing them must not replace runners.
 */
export function configHash(p: PoolConfig, classSize?: ClassSize): string {
  const shaping = {
    provider: p.provider,
    image: p.image ?? null,
    class: p.class ?? null,
    classSize: classSize ?? null,
    maxJobsPerRunner: p.maxJobsPerRunner,
    ephemeral: p.ephemeral,
    distribution: p.distribution ?? null,
    setup: p.setup,
    env: p.env,
    // Provider blocks only when set, so hashes of pools without one stay as they were.
    ...(p.kubernetes ? { kubernetes: p.kubernetes } : {}),
    ...(p.ecs ? { ecs: p.ecs } : {}),
    ...(p.ec2 ? { ec2: p.ec2 } : {}),
  };
  return createHash('sha256').update(stable(shaping)).digest('hex').slice(0, 16);
}

const toPool = (r: any): Pool => ({ name: r.name, config: r.config, configHash: r.config_hash, source: r.source, createdAt: r.created_at, updatedAt: r.updated_at, waitingReason: r.waiting_reason ?? null });

/** Sets or clears why a pool's jobs wait; writes only when it changes. Returns whether it did. */
export async function setWaitingReason(q: Queryable, name: string, reason: string | null): Promise<boolean> {
  const rows = await q.query('update pools set waiting_reason = $2 where name = $1 and waiting_reason is distinct from $2 returning name', [name, reason]);
  return rows.length > 0;
}

/** Creates or replaces a pool; returns whether the runner-shaping hash changed. */
export async function applyPool(q: Queryable, now: number, p: PoolConfig, hash: string, source: string, actor: string): Promise<{ pool: Pool; created: boolean; hashChanged: boolean }> {
  const [prev] = await q.query('select config, config_hash from pools where name = $1 for update', [p.name]);
  const [row] = await q.query(
    `insert into pools (name, config, config_hash, source, created_at, updated_at) values ($1, $2, $3, $4, $5, $5)
     on conflict (name) do update set config = excluded.config, config_hash = excluded.config_hash, source = excluded.source, updated_at = excluded.updated_at,
       waiting_reason = case when pools.config = excluded.config then pools.waiting_reason end
     returning *`,
    [p.name, JSON.stringify(p), hash, source, new Date(now)],
  );
  const changed = !prev || stable(prev.config) !== stable(p);
  if (changed)
    await recordEvents(q, now, [
      { kind: 'pool', subject: p.name, reason: prev ? (prev.config_hash !== hash ? 'config changed; runners will be replaced' : 'config changed') : 'created', actor, data: { configHash: hash } },
    ]);
  return { pool: toPool(row), created: !prev, hashChanged: !!prev && prev.config_hash !== hash };
}

/**
 * Removes a pool with no live runner and no unfinished job; returns what still holds it
 * otherwise (nothing is deleted then). Finished jobs keep their pool's name.
 */
export async function deletePool(q: Queryable, now: number, name: string, actor: string): Promise<{ deleted: Pool } | { runners: number; jobs: number }> {
  const pool = await getPool(q, name);
  const [held] = await q.query<{ runners: number; jobs: number }>(
    `select (select count(*)::int from runners where pool = $1 and state <> 'terminated') as runners,
            (select count(*)::int from jobs where pool = $1 and state in ('queued', 'claimed', 'running')) as jobs`,
    [name],
  );
  if (held!.runners || held!.jobs) return held!;
  await q.query('delete from pools where name = $1', [name]);
  await recordEvents(q, now, [{ kind: 'pool', subject: name, reason: 'deleted', actor }]);
  return { deleted: pool };
}

export async function listPools(q: Queryable): Promise<Pool[]> {
  return (await q.query('select * from pools order by name')).map(toPool);
}

export async function getPool(q: Queryable, name: string): Promise<Pool> {
  const [row] = await q.query('select * from pools where name = $1', [name]);
  if (!row) throw new NotFoundError(`pool ${name} not found`);
  return toPool(row);
}

/** Why a pool's queued jobs wait (null: nothing known, or no such pool). */
export async function getWaitingReason(q: Queryable, name: string): Promise<string | null> {
  const [row] = await q.query<{ waiting_reason: string | null }>('select waiting_reason from pools where name = $1', [name]);
  return row?.waiting_reason ?? null;
}
