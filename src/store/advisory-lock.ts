/*
 * Session-level advisory locks, on a dedicated connection (Db.openSession): held until unlocked
 * or until the connection closes, so a holder that dies frees its lock.
 */
import type { Queryable } from './db.js';

/** Takes the lock if nobody holds it; returns whether this session holds it now. */
export async function tryAdvisoryLock(session: Queryable, key: number): Promise<boolean> {
  const [row] = await session.query<{ ok: boolean }>('select pg_try_advisory_lock($1) as ok', [key]);
  return row!.ok;
}

export async function advisoryUnlock(session: Queryable, key: number): Promise<void> {
  await session.query('select pg_advisory_unlock($1)', [key]);
}
