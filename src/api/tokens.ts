import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { actorOf, requireAdmin, type Authenticator } from './auth.js';
import { readJson, query, validate, type Env } from './http.js';
import { createToken, listTokens, revokeToken } from '../store/queries/tokens.js';
import { getPool } from '../store/queries/pools.js';
import { slug } from '../config/schema.js';
import { MAX_OFFSET_MS, duration, safeString } from '../lib/validation.js';
import { NotFoundError, UnprocessableError } from '../lib/errors.js';
import { recordEvents } from '../store/queries/events.js';

export function tokensRouter(ctx: AppContext, auth: Authenticator) {
  const app = new Hono<Env>();

  app.post('/', async (c) => {
    requireAdmin(c.var.principal);
    // expiresIn 0 would otherwise read as "no expiry"; now + expiresIn must be a valid timestamp
    const expiresIn = duration({ positive: true, max: MAX_OFFSET_MS });
    const body = await readJson(c, z.strictObject({ pool: slug, description: safeString({ max: 500 }).optional(), expiresIn: expiresIn.optional() }));
    await getPool(ctx.db, body.pool).catch((err) => {
      throw err instanceof NotFoundError ? new UnprocessableError(`unknown pool ${body.pool}`, 'pool') : err;
    });
    const now = ctx.clock.now();
    const { token, secret } = await createToken(ctx.db, now, {
      kind: 'registration',
      pool: body.pool,
      description: body.description,
      expiresAt: body.expiresIn ? now + body.expiresIn : null,
    });
    await recordEvents(ctx.db, now, [{ kind: 'token', subject: token.id, reason: 'registration token created', actor: actorOf(c.var.principal), data: { pool: body.pool } }]);
    return c.json({ token, secret }, 201);
  });

  app.get('/', async (c) => {
    requireAdmin(c.var.principal);
    const q = query(c, z.object({ pool: slug.optional(), kind: z.enum(['admin', 'registration']).optional() }));
    return c.json({ tokens: await listTokens(ctx.db, q) });
  });

  app.delete('/:id', async (c) => {
    requireAdmin(c.var.principal);
    const now = ctx.clock.now();
    const id = validate(safeString({ min: 1, max: 100 }), c.req.param('id'), 'id');
    const t = await revokeToken(ctx.db, now, id);
    if (!t) throw new NotFoundError(`token ${c.req.param('id')} not found`);
    await recordEvents(ctx.db, now, [{ kind: 'token', subject: t.id, reason: 'revoked', actor: actorOf(c.var.principal) }]);
    auth.invalidate();
    return c.json({ token: t });
  });

  return app;
}
