import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDb, type Db } from '../../src/store/db.js';
import { migrate } from '../../src/store/migrate.js';

export const PG_ADMIN_URL = process.env.RUNYARD_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export type StoreKind = 'postgres' | 'pglite';
export const STORES: StoreKind[] = ['pglite', 'postgres'];

/** A fresh, empty PostgreSQL database for one test; dropped by the returned cleanup. */
export async function createPgDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `runyard_test_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  return {
    url,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/** A migrated store of the given kind, and its cleanup. */
export async function openTestDb(kind: StoreKind): Promise<{ db: Db; url: string; close: () => Promise<void> }> {
  if (kind === 'pglite') {
    const db = await openDb({ url: 'memory://', dataDir: '' });
    await migrate(db);
    return { db, url: 'memory://', close: () => db.close() };
  }
  const { url, drop } = await createPgDatabase();
  const db = await openDb({ url, dataDir: '' });
  await migrate(db);
  return {
    db,
    url,
    close: async () => {
      await db.close();
      await drop();
    },
  };
}
