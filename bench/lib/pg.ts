/** PostgreSQL helpers: a fresh database per section (as test/helpers/db.ts does, with a bench prefix). */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_ADMIN_URL = process.env.RUNYARD_BENCH_PG_URL ?? process.env.RUNYARD_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A fresh, empty database named runyard_bench_<hex>; drop() removes it. */
export async function createBenchDatabase(tag = ''): Promise<{ url: string; name: string; drop: () => Promise<void> }> {
  const name = `runyard_bench_${tag ? tag + '_' : ''}${randomBytes(4).toString('hex')}`;
  await adminQuery(`create database ${name}`);
  const url = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  return { url, name, drop: () => adminQuery(`drop database if exists ${name} with (force)`).then(() => {}) };
}

export async function adminQuery(sql: string, params: unknown[] = []): Promise<any[]> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL });
  await c.connect();
  try {
    return (await c.query(sql, params as any[])).rows;
  } finally {
    await c.end();
  }
}

export async function queryUrl(url: string, sql: string, params: unknown[] = []): Promise<any[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql, params as any[])).rows;
  } finally {
    await c.end();
  }
}

export async function pgVersion(): Promise<string> {
  try {
    const [r] = await adminQuery('show server_version');
    const [s] = await adminQuery(`select current_setting('shared_buffers') as sb, current_setting('synchronous_commit') as sc, current_setting('fsync') as fs, current_setting('max_connections') as mc, current_setting('autovacuum') as av`);
    return `PostgreSQL ${r.server_version} (shared_buffers ${s.sb}, synchronous_commit ${s.sc}, fsync ${s.fs}, max_connections ${s.mc}, autovacuum ${s.av})`;
  } catch (err) {
    return `PostgreSQL unreachable: ${(err as Error).message}`;
  }
}

/** Live and dead tuples of a table, after asking the statistics collector to catch up. */
export async function tupleStats(url: string, table: string): Promise<{ live: number; dead: number; autovacuums: number; lastAutovacuum: string | null; sizeBytes: number; updates: number; hotUpdates: number }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    // Stats of other backends are flushed at most once a second (PostgreSQL 15).
    await new Promise((r) => setTimeout(r, 1500));
    await c.query('select pg_stat_clear_snapshot()');
    const [r] = (
      await c.query(
        `select n_live_tup::bigint as live, n_dead_tup::bigint as dead, autovacuum_count::bigint as av, last_autovacuum,
                n_tup_upd::bigint as upd, n_tup_hot_upd::bigint as hot,
                pg_total_relation_size(relid)::bigint as size
         from pg_stat_user_tables where relname = $1`,
        [table],
      )
    ).rows;
    return { live: Number(r?.live ?? 0), dead: Number(r?.dead ?? 0), autovacuums: Number(r?.av ?? 0), lastAutovacuum: r?.last_autovacuum ? new Date(r.last_autovacuum).toISOString() : null, sizeBytes: Number(r?.size ?? 0), updates: Number(r?.upd ?? 0), hotUpdates: Number(r?.hot ?? 0) };
  } finally {
    await c.end();
  }
}
