import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openDb, setMemoryTemplateSource, type Db } from '../../src/store/db.js';
import { migrate } from '../../src/store/migrate.js';

/**
 * In-memory stores (memory://) start from a template, an empty migrated database; making one runs
 * initdb, seconds of CPU in every test process. The template is kept in a file in the temp dir,
 * named by a hash of what makes it (the store code, its migrations, the PGlite version), and
 * shared by the test processes; a template of other sources is never used.
 */
function shareMemoryTemplate(): void {
  const store = join(import.meta.dirname, '../../src/store');
  const h = createHash('sha256');
  for (const f of ['db.ts', 'migrate.ts', ...readdirSync(join(store, 'migrations')).sort().map((m) => join('migrations', m))]) h.update(f + '\0').update(readFileSync(join(store, f)));
  h.update(readFileSync(join(import.meta.dirname, '../../node_modules/@electric-sql/pglite/package.json')));
  const prefix = 'runyard-pglite-template-';
  const file = join(tmpdir(), `${prefix}${h.digest('hex').slice(0, 16)}.tar`);
  setMemoryTemplateSource(async (make) => {
    try {
      return new Blob([readFileSync(file)]);
    } catch {
      // not made yet
    }
    const blob = await make();
    // written whole, then renamed: a process that reads it never sees half a file
    const part = `${file}.${process.pid}.part`;
    writeFileSync(part, Buffer.from(await blob.arrayBuffer()));
    renameSync(part, file);
    for (const old of readdirSync(tmpdir()).filter((f) => f.startsWith(prefix) && join(tmpdir(), f) !== file))
      try {
        if (Date.now() - statSync(join(tmpdir(), old)).mtimeMs > 86_400_000) rmSync(join(tmpdir(), old), { force: true });
      } catch {
        // removed meanwhile
      }
    return blob;
  });
}
shareMemoryTemplate();

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
