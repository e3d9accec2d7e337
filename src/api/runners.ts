import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { actorOf, requireAdmin } from './auth.js';
import { parseUuid, query, type Env } from './http.js';
import { getRunner, listRunners, type RunnerState } from '../store/queries/runners.js';
import { deleteRunner, disable, drain, enable, requestTerminate } from '../app/runners.js';
import { slug } from '../config/schema.js';

const RUNNER_STATES = ['starting', 'idle', 'busy', 'draining', 'offline', 'disabled', 'terminated'] as const;

/** Operator actions on runners (src/app/runners.ts); the scheduler and provider carry out terminations. */
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

  const action = (name: string, run: (ctx: AppContext, id: string, actor: string) => Promise<void>) =>
    app.post(`/:id/${name}`, async (c) => {
      requireAdmin(c.var.principal);
      const id = parseUuid(c);
      await run(ctx, id, actorOf(c.var.principal));
      return c.json({ runner: publicRunner(await getRunner(ctx.db, id)) });
    });
  action('disable', disable);
  action('enable', enable);
  action('drain', drain);
  // Terminate: finish running jobs, then stop (the provider stops what it started).
  action('terminate', requestTerminate);

  // Delete: the runner stops at once, removes its state and working dirs; its jobs are requeued.
  app.delete('/:id', async (c) => {
    requireAdmin(c.var.principal);
    const id = parseUuid(c);
    await deleteRunner(ctx, id, actorOf(c.var.principal));
    return c.json({ runner: publicRunner(await getRunner(ctx.db, id)) });
  });

  return app;
}

export function publicRunner(r: Awaited<ReturnType<typeof getRunner>>) {
  const { publicKey, ...rest } = r;
  return { ...rest, hasPublicKey: !!publicKey };
}
