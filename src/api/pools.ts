import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { applyPools, poolSummary, removePool } from '../app/pools.js';
import { actorOf, requireAdmin } from './auth.js';
import { readJson, validate, type Env } from './http.js';
import { poolSchema, slug, type PoolConfig } from '../config/schema.js';
import { getPool, listPools } from '../store/queries/pools.js';
import { InvalidError } from '../lib/errors.js';

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
    const results = await applyPools(ctx, list, actorOf(c.var.principal), { listed: 'pools' in raw, checkClasses: true });
    return c.json({ pools: results.map((r) => ({ ...r.pool, created: r.created, configChanged: r.hashChanged })) });
  });

  app.put('/:name', async (c) => {
    requireAdmin(c.var.principal);
    const body = await readJson(c, poolSchema);
    if (body.name !== c.req.param('name')) throw new InvalidError('name in the body must match the URL', 'name');
    const [r] = await applyPools(ctx, [body], actorOf(c.var.principal), { listed: false, checkClasses: false });
    return c.json({ pool: { ...r!.pool, created: r!.created, configChanged: r!.hashChanged } });
  });

  // Delete: only a pool nothing runs in (no live runner, no unfinished job), so no job is lost.
  app.delete('/:name', async (c) => {
    requireAdmin(c.var.principal);
    const name = c.req.param('name');
    if (!slug.safeParse(name).success) throw new InvalidError('pool name must be a slug', 'name');
    return c.json(await removePool(ctx, name, actorOf(c.var.principal)));
  });

  return app;
}
