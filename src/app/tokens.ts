/** Token use cases: registration tokens for a pool, and revoking any token. */
import type { AppContext } from './context.js';
import { createToken, revokeToken } from '../store/queries/tokens.js';
import { getPool } from '../store/queries/pools.js';
import { recordEvents } from '../store/queries/events.js';
import { NotFoundError, UnprocessableError } from '../lib/errors.js';

/** A registration token for `pool` (422 for an unknown pool); the secret is shown once. */
export async function createRegistrationToken(ctx: AppContext, req: { pool: string; description?: string; expiresIn?: number }, actor: string) {
  await getPool(ctx.db, req.pool).catch((err) => {
    throw err instanceof NotFoundError ? new UnprocessableError(`unknown pool ${req.pool}`, 'pool') : err;
  });
  const now = ctx.clock.now();
  const { token, secret } = await createToken(ctx.db, now, {
    kind: 'registration',
    pool: req.pool,
    description: req.description,
    expiresAt: req.expiresIn ? now + req.expiresIn : null,
  });
  await recordEvents(ctx.db, now, [{ kind: 'token', subject: token.id, reason: 'registration token created', actor, data: { pool: req.pool } }]);
  return { token, secret };
}

/** Revokes a token (404 for an unknown one). The caller drops its cached lookups. */
export async function revoke(ctx: AppContext, id: string, actor: string) {
  const now = ctx.clock.now();
  const t = await revokeToken(ctx.db, now, id);
  if (!t) throw new NotFoundError(`token ${id} not found`);
  await recordEvents(ctx.db, now, [{ kind: 'token', subject: t.id, reason: 'revoked', actor }]);
  return t;
}
