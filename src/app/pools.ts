/**
 * Pool use cases: apply (from the config at start, or the API), check what a pool can never run
 * with here, summarise, delete.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { AppContext } from './context.js';
import type { PoolConfig } from '../config/schema.js';
import { applyPool, configHash, deletePool, type Pool } from '../store/queries/pools.js';
import { listRunners } from '../store/queries/runners.js';
import { ARCHIVE_NAME, storeArtifact } from '../store/artifacts.js';
import { countQueued } from '../queue/read.js';
import { ConflictError, UnprocessableError } from '../lib/errors.js';
import { distributionProblem, providerProblem } from './pool-checks.js';

/**
 * Before the config's pools are applied at start: a distribution that is neither in the store nor
 * a file next to the config is refused (422 naming pools[i].distribution; `up` exits 2). A file
 * there is imported, so a fresh store can start with it.
 */
export async function checkConfigDistributions(ctx: AppContext, configDir: string): Promise<void> {
  for (const [i, p] of ctx.config.pools.entries()) {
    if (!p.distribution || !(await distributionProblem(ctx.db, p))) continue;
    const file = resolve(configDir, p.distribution);
    if (ARCHIVE_NAME.test(p.distribution) && existsSync(file)) {
      const a = await storeArtifact(ctx.db, ctx.clock.now(), p.distribution, readFileSync(file), 'config');
      ctx.log.info({ pool: p.name, file, digest: a.digest, size: a.size }, 'distribution imported from the config directory');
      continue;
    }
    throw new UnprocessableError(`${await distributionProblem(ctx.db, p)}, or put the file ${p.distribution} next to the config (${configDir})`, `pools[${i}].distribution`);
  }
}

/** Refuses (422) what a pool can never run with on this server: its provider, its distribution. */
async function checkRunnable(ctx: AppContext, p: PoolConfig, prefix: string): Promise<void> {
  const provider = providerProblem(ctx.providers, p);
  if (provider) throw new UnprocessableError(provider, `${prefix}provider`);
  const dist = await distributionProblem(ctx.db, p);
  if (dist) throw new UnprocessableError(dist, `${prefix}distribution`);
}

/** Validates a pool against the server's class sizes and stores it. */
export async function applyPoolConfig(ctx: AppContext, p: PoolConfig, source: string, actor: string) {
  if (p.class && !ctx.classSizes[p.class]) throw new UnprocessableError(`unknown class size ${p.class}; known: ${Object.keys(ctx.classSizes).join(', ')}`, 'class');
  const result = await ctx.db.transaction((tx) => applyPool(tx, ctx.clock.now(), p, configHash(p, p.class ? ctx.classSizes[p.class] : undefined), source, actor));
  ctx.bus.emit('runners-changed', 'fleet');
  return result;
}

export async function poolSummary(ctx: AppContext, pool: Pool) {
  const runners = await listRunners(ctx.db, { pool: pool.name });
  const byState: Record<string, number> = {};
  for (const r of runners) byState[r.state] = (byState[r.state] ?? 0) + 1;
  return { ...pool, runners: byState, queued: await countQueued(ctx.db, pool.name) };
}

/** Deletes a pool nothing runs in (no live runner, no unfinished job), so no job is lost. */
export async function removePool(ctx: AppContext, name: string, actor: string) {
  const r = await ctx.db.transaction((tx) => deletePool(tx, ctx.clock.now(), name, actor));
  if (!('deleted' in r)) {
    const what = [r.runners && `${r.runners} live runner${r.runners === 1 ? '' : 's'}`, r.jobs && `${r.jobs} unfinished job${r.jobs === 1 ? '' : 's'}`].filter(Boolean).join(' and ');
    throw new ConflictError(`pool ${name} still has ${what}; cancel or wait for its jobs (runyard jobs list --pool ${name}) and drain its runners (runyard runners list --pool ${name}), then delete it again`, 'name');
  }
  ctx.bus.emit('runners-changed', 'fleet');
  // a pool from runyard.yaml comes back at the next start unless it is removed there too
  return { pool: r.deleted, inConfig: ctx.config.pools.some((p) => p.name === name) };
}

/**
 * Applies pools from the API, all checked before any is stored: class sizes, then what each can
 * never run with here. `listed` names fields `pools[i].` (a list was sent) rather than bare;
 * `checkClasses` refuses an unknown class up front, naming `pools[i].class`.
 */
export async function applyPools(ctx: AppContext, list: PoolConfig[], actor: string, opts: { listed: boolean; checkClasses: boolean }) {
  const prefix = (i: number) => (opts.listed ? `pools[${i}].` : '');
  if (opts.checkClasses) for (const [i, p] of list.entries()) if (p.class && !ctx.classSizes[p.class]) throw new UnprocessableError(`unknown class size ${p.class}`, `pools[${i}].class`);
  for (const [i, p] of list.entries()) await checkRunnable(ctx, p, prefix(i));
  const results = [];
  for (const p of list) results.push(await applyPoolConfig(ctx, p, 'api', actor));
  return results;
}
