import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { requireAdmin } from './auth.js';
import { query, validate, type Env } from './http.js';
import { safeString } from '../lib/validation.js';
import type { Queryable } from '../store/db.js';
import { GoneError, InvalidError, NotFoundError, TooLargeError } from '../lib/errors.js';
import { recordEvents } from '../store/queries/events.js';

export interface ArtifactInfo {
  digest: string;
  name: string;
  size: number;
  createdAt: Date;
}

/** Finds an artifact by digest ("sha256:…") or by name (the newest upload of that name). */
export async function artifactInfo(q: Queryable, ref: string): Promise<ArtifactInfo | null> {
  const [row] = await q.query(
    'select digest, name, size, created_at from artifacts where digest = $1 or name = $1 order by (digest = $1) desc, created_at desc limit 1',
    [ref],
  );
  return row ? { digest: row.digest, name: row.name, size: row.size, createdAt: row.created_at } : null;
}

/** Stores an archive under its sha256 digest (the newest upload of a name wins lookups by name). */
export async function storeArtifact(q: Queryable, now: number, name: string, body: Buffer, actor: string): Promise<{ digest: string; name: string; size: number }> {
  const digest = 'sha256:' + createHash('sha256').update(body).digest('hex');
  await q.query(
    'insert into artifacts (digest, name, size, content, created_at) values ($1, $2, $3, $4, $5) on conflict (digest) do update set name = excluded.name, created_at = excluded.created_at',
    [digest, name, body.length, body, new Date(now)],
  );
  await recordEvents(q, now, [{ kind: 'pool', subject: `artifact:${name}`, reason: 'artifact pushed', actor, data: { digest, size: body.length } }]);
  return { digest, name, size: body.length };
}

export const ARCHIVE_NAME = /^[A-Za-z0-9._-]{1,200}\.(zip|tar\.gz|tgz|tar)$/;

export function artifactsRouter(ctx: AppContext) {
  const app = new Hono<Env>();

  app.post('/', async (c) => {
    requireAdmin(c.var.principal);
    const { name } = query(c, z.object({ name: z.string().regex(ARCHIVE_NAME, 'must be a file name ending in .zip, .tar.gz, .tgz or .tar') }));
    const max = ctx.config.limits.maxArtifactBytes;
    const len = Number(c.req.header('content-length') ?? 0);
    if (len > max) throw new TooLargeError(`artifact of ${len} bytes exceeds the limit of ${max} bytes`, 'body');
    const body = Buffer.from(await c.req.arrayBuffer());
    if (body.length > max) throw new TooLargeError(`artifact exceeds the limit of ${max} bytes`, 'body');
    if (body.length === 0) throw new InvalidError('artifact body is empty', 'body');
    return c.json({ artifact: await storeArtifact(ctx.db, ctx.clock.now(), name, body, 'admin') }, 201);
  });

  app.get('/', async (c) => {
    requireAdmin(c.var.principal);
    const rows = await ctx.db.query('select digest, name, size, created_at from artifacts order by created_at desc limit 200');
    return c.json({ artifacts: rows.map((r) => ({ digest: r.digest, name: r.name, size: r.size, createdAt: r.created_at })) });
  });

  // Admins and runners may download; a runner only what its pool distributes.
  app.get('/:ref', async (c) => {
    const p = c.var.principal;
    let ref: string;
    try {
      ref = decodeURIComponent(c.req.param('ref'));
    } catch {
      throw new InvalidError('artifact reference is not a valid URL-encoded string', 'ref');
    }
    validate(safeString({ min: 1, max: 300 }), ref, 'ref');
    const info = await artifactInfo(ctx.db, ref);
    if (!info) throw new NotFoundError(`artifact ${ref} not found`);
    if (p.kind !== 'admin') {
      if (p.kind !== 'runner') throw new NotFoundError(`artifact ${ref} not found`);
      // The runner's state in the same read: a terminated one is refused at once on every server.
      const [pool] = await ctx.db.query('select p.config, r.state from pools p left join runners r on r.id = $2 where p.name = $1', [p.pool, p.runnerId]);
      if (pool?.state === 'terminated') throw new GoneError(`runner ${p.runnerId} was terminated`);
      const dist = pool?.config?.distribution;
      const allowed = dist && (dist === info.digest || dist === info.name);
      if (!allowed) throw new NotFoundError(`artifact ${ref} not found`);
    }
    const [row] = await ctx.db.query('select content from artifacts where digest = $1', [info.digest]);
    return new Response(row!.content, {
      headers: { 'content-type': 'application/octet-stream', 'x-runyard-digest': info.digest, 'content-disposition': `attachment; filename="${info.name}"` },
    });
  });

  return app;
}
