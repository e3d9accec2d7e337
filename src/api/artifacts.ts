import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { requireAdmin } from './auth.js';
import { query, validate, type Env } from './http.js';
import { safeString } from '../lib/validation.js';
import { GoneError, InvalidError, NotFoundError, TooLargeError } from '../lib/errors.js';
import { ARCHIVE_NAME, artifactContent, artifactInfo, listArtifacts, runnerArtifactAccess, storeArtifact } from '../store/artifacts.js';

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
    return c.json({ artifacts: await listArtifacts(ctx.db) });
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
      const access = await runnerArtifactAccess(ctx.db, p.pool, p.runnerId);
      if (access?.runnerState === 'terminated') throw new GoneError(`runner ${p.runnerId} was terminated`);
      const dist = access?.distribution;
      const allowed = dist && (dist === info.digest || dist === info.name);
      if (!allowed) throw new NotFoundError(`artifact ${ref} not found`);
    }
    const content = await artifactContent(ctx.db, info.digest);
    if (!content) throw new NotFoundError(`artifact ${ref} not found`);
    return new Response(content, {
      headers: { 'content-type': 'application/octet-stream', 'x-runyard-digest': info.digest, 'content-disposition': `attachment; filename="${info.name}"` },
    });
  });

  return app;
}
