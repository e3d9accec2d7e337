import type { Queryable } from '../db.js';

/** The store's own id, made once when it was created: labels what this store's servers start. */
export async function readInstanceId(q: Queryable): Promise<string> {
  const [row] = await q.query<{ value: string }>(`select value from meta where key = 'instance_id'`);
  return row!.value;
}

/** One round trip: fails when the store (or this session's connection) is down. */
export async function pingStore(q: Queryable): Promise<void> {
  await q.query('select 1');
}
