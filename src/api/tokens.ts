import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { actorOf, requireAdmin, type Authenticator } from './auth.js';
import { readJson, query, validate, type Env } from './http.js';
import { listTokens } from '../store/queries/tokens.js';
import { createRegistrationToken, revoke } from '../app/tokens.js';
import { slug } from '../config/schema.js';
import { MAX_OFFSET_MS, duration, safeString } from '../lib/validation.js';

export function tokensRouter(ctx: AppContext, auth: Authenticator) {
  const app = new Hono<Env>();

  app.post('/', async (c) => {
    requireAdmin(c.var.principal);
    // expiresIn 0 would otherwise read as "no expiry"; now + expiresIn must be a valid timestamp
    const expiresIn = duration({ positive: true, max: MAX_OFFSET_MS });
    const body = await readJson(c, z.strictObject({ pool: slug, description: safeString({ max: 500 }).optional(), expiresIn: expiresIn.optional() }));
    return c.json(await createRegistrationToken(ctx, body, actorOf(c.var.principal)), 201);
  });

  app.get('/', async (c) => {
    requireAdmin(c.var.principal);
    const q = query(c, z.object({ pool: slug.optional(), kind: z.enum(['admin', 'registration']).optional() }));
    return c.json({ tokens: await listTokens(ctx.db, q) });
  });

  app.delete('/:id', async (c) => {
    requireAdmin(c.var.principal);
    const id = validate(safeString({ min: 1, max: 100 }), c.req.param('id'), 'id');
    const t = await revoke(ctx, id, actorOf(c.var.principal));
    auth.invalidate();
    return c.json({ token: t });
  });

  return app;
}
