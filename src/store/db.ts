import { mkdirSync } from 'node:fs';
import pg from 'pg';
import { PGlite, types as pgliteTypes } from '@electric-sql/pglite';

/**
 * SQL text, or a named statement: on PostgreSQL it is parsed and planned once per connection and
 * only executed afterwards (hot statements; their text must not change under a name). Named
 * statements list their columns: a `*` would break when a migration changes the table while
 * the statement is prepared on a live connection.
 */
export type Statement = string | { name: string; text: string };

const textOf = (s: Statement) => (typeof s === 'string' ? s : s.text);

export interface Queryable {
  query<T = Record<string, any>>(sql: Statement, params?: unknown[]): Promise<T[]>;
}

/** One handle over PostgreSQL (pg pool) or embedded PGlite; the same SQL runs on both. */
export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /** Runs a script of several statements (migrations). */
  exec(sql: string): Promise<void>;
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** A dedicated connection, for session-scoped advisory locks. */
  withSession<T>(fn: (session: Queryable) => Promise<T>): Promise<T>;
  /** A long-lived dedicated connection (leader lock); release() gives it back. */
  openSession(): Promise<Queryable & { release(): void }>;
  close(): Promise<void>;
}

const INT8 = 20;

export function withTransaction<T>(db: Db, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  return db.transaction(fn);
}

export async function openPostgres(url: string, opts: { max?: number } = {}): Promise<Db> {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as any)) as any,
    },
  });
  // An idle client that errors (server restart) must not crash the process.
  pool.on('error', () => {});
  const q = async (c: pg.Pool | pg.PoolClient, sql: Statement, params?: unknown[]) =>
    (await (typeof sql === 'string' ? c.query(sql, params as any[]) : c.query({ name: sql.name, text: sql.text, values: params as any[] }))).rows;
  await q(pool, 'select 1');
  return {
    kind: 'postgres',
    query: (sql, params) => q(pool, sql, params) as Promise<any[]>,
    exec: async (sql) => {
      await pool.query(sql);
    },
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query('begin');
        const result = await fn({ query: (sql, params) => q(client, sql, params) as Promise<any[]> });
        await client.query('commit');
        return result;
      } catch (err) {
        await client.query('rollback').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
    async withSession(fn) {
      const client = await pool.connect();
      let broken = false;
      try {
        return await fn({ query: (sql, params) => q(client, sql, params) as Promise<any[]> });
      } catch (err) {
        broken = true;
        throw err;
      } finally {
        client.release(broken);
      }
    },
    async openSession() {
      const client = await pool.connect();
      let released = false;
      client.on('error', () => {});
      return {
        query: (sql: Statement, params?: unknown[]) => q(client, sql, params) as Promise<any[]>,
        release: () => {
          if (!released) client.release(true);
          released = true;
        },
      };
    },
    close: () => pool.end(),
  };
}

const PARSERS = { [pgliteTypes.INT8]: (v: string) => Number(v) };

// In-memory stores start from a snapshot of an empty, migrated database: initdb takes seconds,
// loading the snapshot a fraction of that. Tests open many such stores.
let memoryTemplate: Promise<Blob> | undefined;
async function makeMemoryTemplate(): Promise<Blob> {
  const { migrate } = await import('./migrate.js');
  const fresh = await wrapPglite(new PGlite({ parsers: PARSERS }));
  await migrate(fresh);
  const raw = (fresh as any).raw as PGlite;
  const blob = await raw.dumpDataDir('none');
  await fresh.close();
  return blob;
}

export async function openPglite(dataDir: string | undefined): Promise<Db> {
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
    return wrapPglite(new PGlite(dataDir, { parsers: PARSERS }));
  }
  memoryTemplate ??= makeMemoryTemplate();
  return wrapPglite(new PGlite({ parsers: PARSERS, loadDataDir: await memoryTemplate }));
}

async function wrapPglite(db: PGlite): Promise<Db> {
  await db.waitReady;
  const handle: Db = {
    kind: 'pglite',
    query: async (sql, params) => (await db.query<any>(textOf(sql), params)).rows,
    exec: async (sql) => {
      await db.exec(sql);
    },
    transaction: (fn) => db.transaction((tx) => fn({ query: async (sql, params) => (await tx.query<any>(textOf(sql), params)).rows })),
    // PGlite has a single connection: the whole database is one session.
    withSession: (fn) => fn(handle),
    openSession: async () => ({ query: handle.query, release: () => {} }),
    close: () => db.close(),
  };
  Object.defineProperty(handle, 'raw', { value: db });
  return handle;
}

/** PostgreSQL for a postgres:// URL, in-memory PGlite for memory://, otherwise PGlite in dataDir. */
export function openDb(opts: { url?: string; dataDir: string }): Promise<Db> {
  if (opts.url === 'memory://') return openPglite(undefined);
  return opts.url ? openPostgres(opts.url) : openPglite(opts.dataDir);
}
