import { Hono } from 'hono';
import { z } from 'zod';
import type { ApiContext } from './context.js';
import { requireAdmin } from './auth.js';
import { query, type Env } from './http.js';
import { listEvents } from '../store/queries/events.js';

export function eventsRouter(ctx: ApiContext) {
  const app = new Hono<Env>();
  app.get('/', async (c) => {
    requireAdmin(c.var.principal);
    const q = query(
      c,
      z.object({
        kind: z.enum(['job', 'runner', 'pool', 'token', 'auth', 'scheduler', 'github']).optional(),
        subject: z.string().max(200).optional(),
        before: z.coerce.number().int().positive().optional(),
        after: z.coerce.number().int().min(0).optional(),
        limit: z.coerce.number().int().min(1).max(1000).default(100),
      }),
    );
    const events = await listEvents(ctx.db, q);
    return c.json({ events, nextBefore: events.length === q.limit && q.after === undefined ? events[events.length - 1]!.id : null });
  });
  return app;
}
