import type { Queryable } from '../db.js';

/** Records (or refreshes) this server's row. */
export async function beatServer(q: Queryable, now: number, s: { id: string; url: string; pid: number }): Promise<void> {
  await q.query(
    `insert into servers (id, url, pid, started_at, heartbeat_at) values ($1, $2, $3, $4, $4)
     on conflict (id) do update set url = excluded.url, heartbeat_at = excluded.heartbeat_at`,
    [s.id, s.url, s.pid, new Date(now)],
  );
}

/** URLs of servers that beat since `since`, the most recently started first; stale rows are removed. */
export async function liveServerUrls(q: Queryable, since: number, forgetBefore: number): Promise<string[]> {
  await q.query('delete from servers where heartbeat_at < $1', [new Date(forgetBefore)]);
  const rows = await q.query<{ url: string }>('select url, max(started_at) as s from servers where heartbeat_at >= $1 group by url order by s desc', [new Date(since)]);
  return rows.map((r) => r.url);
}

export async function removeServer(q: Queryable, id: string): Promise<void> {
  await q.query('delete from servers where id = $1', [id]);
}
