import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { actorOf, requireAdmin } from './auth.js';
import { parseUuid, query, type Env } from './http.js';
import { getRunner, listRunners, refreshBusyIdle, setHold, transitionRunner, type RunnerState } from '../store/queries/runners.js';
import { terminateRunner } from '../app/runners.js';
import { ConflictError } from '../lib/errors.js';
import { slug } from '../config/schema.js';

const RUNNER_STATES = ['starting', 'idle', 'busy', 'draining', 'offline', 'disabled', 'terminated'] as const;

/** Operator actions on runners; the scheduler and provider carry out terminations. */
export function runnersRouter(ctx: AppContext) {
  const app = new Hono<Env>();

  app.get('/', async (c) => {
    requireAdmin(c.var.principal);
    const q = query(
      c,
      z.object({
        pool: slug.optional(),
        state: z.string().transform((s) => s.split(',')).pipe(z.array(z.enum(RUNNER_STATES))).optional(),
        all: z.enum(['0', '1', 'true', 'false']).optional(),
        limit: z.coerce.number().int().min(1).max(5000).default(1000),
      }),
    );
    const runners = await listRunners(ctx.db, { pool: q.pool, state: q.state as RunnerState[] | undefined, includeTerminated: q.all === '1' || q.all === 'true', limit: q.limit });
    return c.json({ runners: runners.map(publicRunner) });
  });

  app.get('/:id', async (c) => {
    requireAdmin(c.var.principal);
    return c.json({ runner: publicRunner(await getRunner(ctx.db, parseUuid(c))) });
  });

  const action = (name: string, run: (id: string, actor: string) => Promise<void>) =>
    app.post(`/:id/${name}`, async (c) => {
      requireAdmin(c.var.principal);
      const id = parseUuid(c);
      await getRunner(ctx.db, id);
      await run(id, actorOf(c.var.principal));
      ctx.bus.emit('runners-changed', 'fleet');
      return c.json({ runner: publicRunner(await getRunner(ctx.db, id)) });
    });

  action('disable', async (id, actor) => {
    const r = await transitionRunner(ctx.db, ctx.clock.now(), id, 'disabled', 'disabled by operator', { from: ['idle', 'busy', 'offline'], actor });
    if (!r) throw new ConflictError(`runner ${id} can only be disabled when idle, busy or offline`);
    await setHold(ctx.db, id, 'disabled');
    ctx.hub.send(id, 'disable');
  });

  action('enable', async (id, actor) => {
    const now = ctx.clock.now();
    const r = await ctx.db.transaction(async (tx) => {
      const moved = await transitionRunner(tx, now, id, 'idle', 'enabled by operator', { from: ['disabled'], actor });
      if (moved) {
        await setHold(tx, id, null);
        await refreshBusyIdle(tx, now, id);
      }
      return moved;
    });
    if (!r) throw new ConflictError(`runner ${id} is not disabled`);
    ctx.hub.send(id, 'enable');
  });

  action('drain', async (id, actor) => {
    const r = await transitionRunner(ctx.db, ctx.clock.now(), id, 'draining', 'drained by operator', { from: ['idle', 'busy', 'disabled'], actor });
    if (!r) throw new ConflictError(`runner ${id} cannot be drained in its current state`);
    await setHold(ctx.db, id, 'draining');
    ctx.hub.send(id, 'drain');
  });

  // Terminate: finish running jobs, then stop (the provider stops what it started).
  action('terminate', async (id, actor) => {
    const now = ctx.clock.now();
    const runner = await getRunner(ctx.db, id);
    if (runner.state === 'terminated') return;
    if (runner.state === 'starting' || runner.state === 'offline') {
      // Nothing to drain: it never registered or is gone.
      await terminateRunner(ctx, now, id, 'terminated by operator', { actor, jobsReason: 'runner terminated' });
      return;
    }
    await transitionRunner(ctx.db, now, id, 'draining', 'terminate requested by operator', { from: ['idle', 'busy', 'disabled'], actor });
    await setHold(ctx.db, id, 'draining');
    ctx.hub.send(id, 'drain');
  });

  // Delete: the runner stops at once, removes its state and working dirs; its jobs are requeued.
  app.delete('/:id', async (c) => {
    requireAdmin(c.var.principal);
    const id = parseUuid(c);
    const now = ctx.clock.now();
    await getRunner(ctx.db, id);
    ctx.hub.send(id, 'delete');
    await terminateRunner(ctx, now, id, 'deleted by operator', { actor: actorOf(c.var.principal), jobsReason: 'runner deleted' });
    return c.json({ runner: publicRunner(await getRunner(ctx.db, id)) });
  });

  return app;
}

export function publicRunner(r: Awaited<ReturnType<typeof getRunner>>) {
  const { publicKey, ...rest } = r;
  return { ...rest, hasPublicKey: !!publicKey };
}
