import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { requireAdmin } from './auth.js';
import { query, type Env } from './http.js';
import { listEvents } from '../store/queries/events.js';
import { INT8_MAX, intQuery, safeString } from '../lib/validation.js';

export function eventsRouter(ctx: AppContext) {
  const app = new Hono<Env>();
  app.get('/', async (c) => {
    requireAdmin(c.var.principal);
    const q = query(
      c,
      z.object({
        kind: z.enum(['job', 'runner', 'pool', 'token', 'auth', 'scheduler', 'github']).optional(),
        subject: safeString({ max: 200 }).optional(),
        before: intQuery(1, INT8_MAX).optional(),
        after: intQuery(0, INT8_MAX).optional(),
        limit: z.coerce.number().int().min(1).max(1000).default(100),
      }),
    );
    const events = await listEvents(ctx.db, q);
    return c.json({ events, nextBefore: events.length === q.limit && q.after === undefined ? events[events.length - 1]!.id : null });
  });
  return app;
}
