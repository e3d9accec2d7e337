/** Artifacts (distribution archives) in the store: content addressed by sha256, found by digest or name. */
import { createHash } from 'node:crypto';
import type { Queryable } from './db.js';
import { recordEvents } from './queries/events.js';

export interface ArtifactInfo {
  digest: string;
  name: string;
  size: number;
  createdAt: Date;
}

/** The file names an archive may be stored under. */
export const ARCHIVE_NAME = /^[A-Za-z0-9._-]{1,200}\.(zip|tar\.gz|tgz|tar)$/;

const toInfo = (r: any): ArtifactInfo => ({ digest: r.digest, name: r.name, size: r.size, createdAt: r.created_at });

/** Finds an artifact by digest ("sha256:…") or by name (the newest upload of that name). */
export async function artifactInfo(q: Queryable, ref: string): Promise<ArtifactInfo | null> {
  const [row] = await q.query(
    'select digest, name, size, created_at from artifacts where digest = $1 or name = $1 order by (digest = $1) desc, created_at desc limit 1',
    [ref],
  );
  return row ? toInfo(row) : null;
}

/** The newest uploads first. */
export async function listArtifacts(q: Queryable, limit = 200): Promise<ArtifactInfo[]> {
  return (await q.query('select digest, name, size, created_at from artifacts order by created_at desc limit $1', [limit])).map(toInfo);
}

export async function artifactContent(q: Queryable, digest: string): Promise<Uint8Array<ArrayBuffer> | undefined> {
  const [row] = await q.query('select content from artifacts where digest = $1', [digest]);
  return row?.content;
}

/** What a runner may download: its pool's distribution, and its own state in the same read. */
export async function runnerArtifactAccess(q: Queryable, pool: string, runnerId: string): Promise<{ distribution: string | undefined; runnerState: string | null } | undefined> {
  const [row] = await q.query('select p.config, r.state from pools p left join runners r on r.id = $2 where p.name = $1', [pool, runnerId]);
  return row ? { distribution: row.config?.distribution, runnerState: row.state ?? null } : undefined;
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
