import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { actorOf, requireAdmin } from './auth.js';
import { readJson, validate, type Env } from './http.js';
import { poolSchema, slug, type PoolConfig } from '../config/schema.js';
import { applyPool, configHash, deletePool, getPool, listPools, type Pool } from '../store/queries/pools.js';
import { listRunners } from '../store/queries/runners.js';
import { ConflictError, InvalidError, UnprocessableError } from '../lib/errors.js';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ARCHIVE_NAME, storeArtifact } from '../store/artifacts.js';
import { queuedCount } from '../store/stats.js';
import { distributionProblem, providerProblem } from '../app/pool-checks.js';

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
  return { ...pool, runners: byState, queued: await queuedCount(ctx.db, pool.name) };
}

export function poolsRouter(ctx: AppContext) {
  const app = new Hono<Env>();

  app.get('/', async (c) => {
    requireAdmin(c.var.principal);
    const pools = await listPools(ctx.db);
    return c.json({ pools: await Promise.all(pools.map((p) => poolSummary(ctx, p))) });
  });

  app.get('/:name', async (c) => {
    requireAdmin(c.var.principal);
    const name = c.req.param('name');
    if (!slug.safeParse(name).success) throw new InvalidError('pool name must be a slug', 'name');
    return c.json({ pool: await poolSummary(ctx, await getPool(ctx.db, name)) });
  });

  // Apply one pool or several ({pools: [...]}) — create or replace, by name.
  app.post('/', async (c) => {
    requireAdmin(c.var.principal);
    // One pool, or {pools: [...]}: chosen by shape, so a bad field is named ("pools[1].maxRunners").
    const raw = await readJson(c, z.record(z.string(), z.unknown()));
    const list: PoolConfig[] =
      'pools' in raw ? validate(z.strictObject({ pools: z.array(poolSchema).min(1).max(100) }), raw, 'body').pools : [validate(poolSchema, raw, 'body')];
    for (const [i, p] of list.entries()) if (p.class && !ctx.classSizes[p.class]) throw new UnprocessableError(`unknown class size ${p.class}`, `pools[${i}].class`);
    for (const [i, p] of list.entries()) await checkRunnable(ctx, p, 'pools' in raw ? `pools[${i}].` : '');
    const results = [];
    for (const p of list) results.push(await applyPoolConfig(ctx, p, 'api', actorOf(c.var.principal)));
    return c.json({ pools: results.map((r) => ({ ...r.pool, created: r.created, configChanged: r.hashChanged })) });
  });

  app.put('/:name', async (c) => {
    requireAdmin(c.var.principal);
    const body = await readJson(c, poolSchema);
    if (body.name !== c.req.param('name')) throw new InvalidError('name in the body must match the URL', 'name');
    await checkRunnable(ctx, body, '');
    const r = await applyPoolConfig(ctx, body, 'api', actorOf(c.var.principal));
    return c.json({ pool: { ...r.pool, created: r.created, configChanged: r.hashChanged } });
  });

  // Delete: only a pool nothing runs in (no live runner, no unfinished job), so no job is lost.
  app.delete('/:name', async (c) => {
    requireAdmin(c.var.principal);
    const name = c.req.param('name');
    if (!slug.safeParse(name).success) throw new InvalidError('pool name must be a slug', 'name');
    const r = await ctx.db.transaction((tx) => deletePool(tx, ctx.clock.now(), name, actorOf(c.var.principal)));
    if (!('deleted' in r)) {
      const what = [r.runners && `${r.runners} live runner${r.runners === 1 ? '' : 's'}`, r.jobs && `${r.jobs} unfinished job${r.jobs === 1 ? '' : 's'}`].filter(Boolean).join(' and ');
      throw new ConflictError(`pool ${name} still has ${what}; cancel or wait for its jobs (runyard jobs list --pool ${name}) and drain its runners (runyard runners list --pool ${name}), then delete it again`, 'name');
    }
    ctx.bus.emit('runners-changed', 'fleet');
    // a pool from runyard.yaml comes back at the next start unless it is removed there too
    return c.json({ pool: r.deleted, inConfig: ctx.config.pools.some((p) => p.name === name) });
  });

  return app;
}
