import type { Context, MiddlewareHandler } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import type { AppContext } from '../app/context.js';
import { findTokenBySecret, type TokenRow } from '../store/queries/tokens.js';
import { ForbiddenError, UnauthorizedError } from '../lib/errors.js';
import type { Env } from './http.js';

export type Principal =
  | { kind: 'admin'; tokenId: string }
  | { kind: 'registration'; tokenId: string; pool: string; runnerId: string | null }
  | { kind: 'runner'; tokenId: string; runnerId: string; pool: string };

const CACHE_TTL_MS = 5000;

/**
 * Resolves the bearer token to a principal. Lookups are cached for a few seconds: runners call
 * several times a second at scale, and a revoked token stops working within the TTL.
 */
export class Authenticator {
  private cache = new Map<string, { token: TokenRow | undefined; at: number }>();

  constructor(private ctx: AppContext) {
    // Every termination on this server, whoever made it (src/app/runners.ts), drops
    // the runner's cached credentials. Other servers' caches may hold it a few seconds more, but
    // every runner call also checks the runner's state in the statement it runs anyway.
    ctx.bus.on('runner-terminated', (runnerId) => this.forgetRunner(runnerId));
  }

  private forgetRunner(runnerId: string): void {
    for (const [secret, hit] of this.cache) if (hit.token?.runnerId === runnerId) this.cache.delete(secret);
  }

  async resolve(secret: string): Promise<Principal | undefined> {
    const now = this.ctx.clock.now();
    let hit = this.cache.get(secret);
    if (!hit || now - hit.at > CACHE_TTL_MS || now < hit.at) {
      hit = { token: await findTokenBySecret(this.ctx.db, secret), at: now };
      if (this.cache.size > 50_000) this.cache.clear();
      this.cache.set(secret, hit);
    }
    const t = hit.token;
    if (!t || t.revokedAt || (t.expiresAt && t.expiresAt.getTime() <= now)) return undefined;
    if (t.kind === 'admin') return { kind: 'admin', tokenId: t.id };
    if (t.kind === 'registration') return { kind: 'registration', tokenId: t.id, pool: t.pool!, runnerId: t.runnerId };
    return { kind: 'runner', tokenId: t.id, runnerId: t.runnerId!, pool: t.pool! };
  }

  /** Forget cached lookups (after a revoke on this server). */
  invalidate(): void {
    this.cache.clear();
  }

  /** Why a token failed, for registration (revoked tokens make agents give up). */
  async describe(secret: string): Promise<'unknown' | 'revoked' | 'expired' | 'ok'> {
    const t = await findTokenBySecret(this.ctx.db, secret);
    if (!t) return 'unknown';
    if (t.revokedAt) return 'revoked';
    if (t.expiresAt && t.expiresAt.getTime() <= this.ctx.clock.now()) return 'expired';
    return 'ok';
  }

  middleware(): MiddlewareHandler<Env> {
    return async (c, next) => {
      const header = c.req.header('authorization') ?? '';
      const m = /^Bearer\s+(\S+)$/i.exec(header);
      // Refusals are audited where every error is answered (src/api/app.ts).
      if (!m) throw new UnauthorizedError('missing bearer token: send Authorization: Bearer <token> (the admin token printed by `runyard up` and saved in its data dir as admin-token)');
      const principal = await this.resolve(m[1]!);
      if (!principal) throw new UnauthorizedError('invalid, revoked or expired token');
      c.set('principal', principal);
      await next();
    };
  }

  /** The audit line of a refused call (401 or 403), aggregated (RefusalAudit); it never fails the request. */
  async audit(c: Context, reason: string, actor = 'anonymous'): Promise<void> {
    await this.ctx.audit.record({ kind: 'auth', source: clientAddress(c), method: c.req.method, path: rawPath(c.req.url), reason, actor });
  }
}

/** The peer's address (a proxy's X-Forwarded-For is not trusted: anyone can send one). */
export function clientAddress(c: Context): string {
  return (c.env as Partial<HttpBindings> | undefined)?.incoming?.socket?.remoteAddress ?? 'unknown';
}

/** The path as sent, percent-encoding kept, so a `%00` is recorded as written. */
export function rawPath(url: string): string {
  const m = /^[a-z]+:\/\/[^/]*([^?#]*)/i.exec(url);
  return m?.[1] || '/';
}

export function requireAdmin(p: Principal): asserts p is Extract<Principal, { kind: 'admin' }> {
  if (p.kind !== 'admin') throw new ForbiddenError(`this call needs an admin token; a ${p.kind} token was given`);
}

/** Runner endpoints: only the runner itself, with its own credential. */
export function requireRunner(p: Principal, runnerId?: string): asserts p is Extract<Principal, { kind: 'runner' }> {
  if (p.kind !== 'runner') throw new ForbiddenError(`this call needs a runner credential; a ${p.kind} token was given`);
  if (runnerId && p.runnerId !== runnerId) throw new ForbiddenError('a runner may only act as itself');
}

export const actorOf = (p: Principal) => (p.kind === 'runner' ? p.runnerId : `${p.kind}:${p.tokenId}`);
