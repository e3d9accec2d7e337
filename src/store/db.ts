import { mkdirSync } from 'node:fs';
import pg from 'pg';
import { PGlite, types as pgliteTypes } from '@electric-sql/pglite';
import { StoreUnavailableError, storeError } from './store-errors.js';

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

export async function openPostgres(url: string, opts: { max?: number; connectionTimeoutMs?: number } = {}): Promise<Db> {
  const pool = new pg.Pool({
    connectionString: url,
    // 10 for requests, and the two services that keep a connection of their own (scheduler gather,
    // heartbeats: DedicatedConnection); the scheduler leader's lock takes one more while it leads
    max: opts.max ?? 12,
    // A server that black-holes connections must not hold requests for minutes: they get a 503.
    connectionTimeoutMillis: opts.connectionTimeoutMs ?? 10_000,
    keepAlive: true,
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as any)) as any,
    },
  });
  // An idle client that errors (server restart) must not crash the process.
  pool.on('error', () => {});
  // Every client has an error listener from the moment it connects to its end, so no error is
  // ever unhandled: not while it is checked out (pg-pool listens only while a client is idle),
  // and not in the gap before a checkout's caller resumes (PostgreSQL shutting down sends
  // ReadyForQuery and FATAL 57P01 in one packet, parsed in one go). A broken client fails its
  // next statement with StoreUnavailableError and is destroyed on release.
  const broken = new WeakMap<pg.ClientBase, unknown>();
  pool.on('connect', (client) =>
    client.on('error', (err) => {
      if (!broken.has(client)) broken.set(client, err);
    }),
  );
  const q = async (c: pg.Pool | pg.PoolClient, sql: Statement, params?: unknown[]) => {
    try {
      return (await (typeof sql === 'string' ? c.query(sql, params as any[]) : c.query({ name: sql.name, text: sql.text, values: params as any[] }))).rows;
    } catch (err) {
      throw storeError(err);
    }
  };
  await q(pool, 'select 1');
  return {
    kind: 'postgres',
    query: (sql, params) => q(pool, sql, params) as Promise<any[]>,
    exec: async (sql) => {
      await q(pool, sql);
    },
    async transaction(fn) {
      const lease = await checkout(pool);
      try {
        await lease.query('begin');
        const result = await fn({ query: (sql, params) => lease.query(sql, params) as Promise<any[]> });
        await lease.query('commit');
        return result;
      } catch (err) {
        if (!lease.broken) await lease.query('rollback').catch(() => {});
        throw storeError(err);
      } finally {
        lease.release();
      }
    },
    async withSession(fn) {
      const lease = await checkout(pool);
      let failed = false;
      try {
        return await fn({ query: (sql, params) => lease.query(sql, params) as Promise<any[]> });
      } catch (err) {
        failed = true;
        throw storeError(err);
      } finally {
        // session state (locks, settings) may be left behind by a failure: do not reuse it
        lease.release(failed);
      }
    },
    async openSession() {
      const lease = await checkout(pool);
      let released = false;
      return {
        query: (sql: Statement, params?: unknown[]) => lease.query(sql, params) as Promise<any[]>,
        release: () => {
          if (!released) lease.release(true);
          released = true;
        },
      };
    },
    close: () => pool.end(),
  };

  /** A client checked out of the pool, failing fast once its connection is known broken. */
  async function checkout(p: pg.Pool) {
    let client: pg.PoolClient;
    try {
      client = await p.connect();
    } catch (err) {
      throw storeError(err);
    }
    return {
      get broken() {
        return broken.get(client);
      },
      query(sql: Statement, params?: unknown[]) {
        const dead = broken.get(client);
        if (dead) return Promise.reject(new StoreUnavailableError(dead));
        return q(client, sql, params);
      },
      release(destroy = false) {
        const dead = broken.get(client);
        client.release(dead instanceof Error ? dead : destroy);
      },
    };
  }
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
let memoryTemplateSource = makeMemoryTemplate;

/**
 * Where the in-memory template comes from: `source` gets the function that makes one (initdb and
 * migrations). The tests keep it in a file shared by their processes (test/helpers/db.ts).
 */
export function setMemoryTemplateSource(source: (make: () => Promise<Blob>) => Promise<Blob>): void {
  memoryTemplate = undefined;
  memoryTemplateSource = () => source(makeMemoryTemplate);
}

export async function openPglite(dataDir: string | undefined): Promise<Db> {
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
    return wrapPglite(new PGlite(dataDir, { parsers: PARSERS }));
  }
  memoryTemplate ??= memoryTemplateSource();
  return wrapPglite(new PGlite({ parsers: PARSERS, loadDataDir: await memoryTemplate }));
}

async function wrapPglite(db: PGlite): Promise<Db> {
  await db.waitReady;
  // A closed (or closing) PGlite is a store that is down, as a lost PostgreSQL is.
  const mapped = <T>(p: Promise<T>) => p.catch((err) => Promise.reject(storeError(err)));
  const handle: Db = {
    kind: 'pglite',
    query: async (sql, params) => (await mapped(db.query<any>(textOf(sql), params))).rows,
    exec: async (sql) => {
      await mapped(db.exec(sql));
    },
    transaction: (fn) => mapped(db.transaction((tx) => fn({ query: async (sql, params) => (await tx.query<any>(textOf(sql), params)).rows }))),
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
