import { createHash, randomBytes } from 'node:crypto';
import type { Queryable } from '../db.js';

export type TokenKind = 'admin' | 'registration' | 'runner';
const PREFIX: Record<TokenKind, string> = { admin: 'ryd_adm_', registration: 'ryd_reg_', runner: 'ryd_run_' };

export interface TokenRow {
  id: string;
  kind: TokenKind;
  pool: string | null;
  runnerId: string | null;
  description: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  /** when a single-use (runner-bound) registration token was spent */
  usedAt: Date | null;
}

export const hashToken = (secret: string) => createHash('sha256').update(secret).digest('hex');

function toToken(r: any): TokenRow {
  return { id: r.id, kind: r.kind, pool: r.pool, runnerId: r.runner_id, description: r.description, createdAt: r.created_at, expiresAt: r.expires_at, revokedAt: r.revoked_at, usedAt: r.used_at ?? null };
}

/** Creates a token; the secret is returned once and only its hash is stored. */
export async function createToken(
  q: Queryable,
  now: number,
  t: { kind: TokenKind; pool?: string | null; runnerId?: string | null; description?: string | null; expiresAt?: number | null; secret?: string },
): Promise<{ token: TokenRow; secret: string }> {
  const secret = t.secret ?? PREFIX[t.kind] + randomBytes(24).toString('base64url');
  const id = 'tok_' + randomBytes(6).toString('hex');
  const [row] = await q.query(
    `insert into tokens (id, kind, hash, pool, runner_id, description, created_at, expires_at) values ($1, $2, $3, $4, $5, $6, $7, $8)
     on conflict (hash) do update set revoked_at = null returning *`,
    [id, t.kind, hashToken(secret), t.pool ?? null, t.runnerId ?? null, t.description ?? null, new Date(now), t.expiresAt ? new Date(t.expiresAt) : null],
  );
  return { token: toToken(row), secret };
}

export async function findTokenBySecret(q: Queryable, secret: string): Promise<TokenRow | undefined> {
  const [row] = await q.query('select * from tokens where hash = $1', [hashToken(secret)]);
  return row ? toToken(row) : undefined;
}

export async function listTokens(q: Queryable, f: { kind?: TokenKind; pool?: string } = {}): Promise<TokenRow[]> {
  return (
    await q.query(
      `select * from tokens where ($1::text is null or kind = $1) and ($2::text is null or pool = $2) and kind <> 'runner' order by created_at desc, id`,
      [f.kind ?? null, f.pool ?? null],
    )
  ).map(toToken);
}

export async function revokeToken(q: Queryable, now: number, id: string): Promise<TokenRow | undefined> {
  const [row] = await q.query('update tokens set revoked_at = coalesce(revoked_at, $2) where id = $1 returning *', [id, new Date(now)]);
  return row ? toToken(row) : undefined;
}

/** Revokes a runner's credentials; `launch` too: its launch token, when the runner is gone for good. */
export async function revokeRunnerTokens(q: Queryable, now: number, runnerId: string, opts: { launch?: boolean } = {}): Promise<void> {
  await q.query(`update tokens set revoked_at = $2 where runner_id = $1 and (kind = 'runner' or $3) and revoked_at is null`, [runnerId, new Date(now), opts.launch ?? false]);
}

/**
 * Spends a single-use token. Returns false when it was already spent: the row lock makes a
 * concurrent second registration wait for the first and then see it spent.
 */
export async function spendToken(q: Queryable, now: number, id: string): Promise<boolean> {
  const rows = await q.query('update tokens set used_at = $2 where id = $1 and used_at is null returning id', [id, new Date(now)]);
  return rows.length === 1;
}

export async function countAdminTokens(q: Queryable): Promise<number> {
  const [r] = await q.query(`select count(*)::int as n from tokens where kind = 'admin' and revoked_at is null`);
  return r!.n;
}
