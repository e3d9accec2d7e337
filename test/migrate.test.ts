/*
 * Migrations: forward-only, recorded, idempotent, atomic per migration, and safe when several
 * servers start at once on one fresh PostgreSQL database (advisory lock).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createPgDatabase, STORES, type StoreKind } from './helpers/db.js';
import { openDb, openPostgres, type Db } from '../src/store/db.js';
import { loadMigrations, migrate, SchemaTooNewError } from '../src/store/migrate.js';

/** A store with no tables at all (openTestDb would migrate it). */
async function openEmpty(kind: StoreKind): Promise<{ db: Db; url: string; close: () => Promise<void> }> {
  if (kind === 'pglite') {
    // Not memory://: in-memory stores start from an already migrated snapshot.
    const dataDir = mkdtempSync(join(tmpdir(), 'runyard-pglite-'));
    const db = await openDb({ dataDir });
    return {
      db,
      url: dataDir,
      close: async () => {
        await db.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }
  const { url, drop } = await createPgDatabase();
  const db = await openDb({ url, dataDir: '' });
  return {
    db,
    url,
    close: async () => {
      await db.close();
      await drop();
    },
  };
}

const tableExists = async (db: Db, name: string) => (await db.query<{ t: string | null }>('select to_regclass($1)::text as t', [name]))[0]!.t !== null;

test('loadMigrations reads NNNN_name.sql files in order and ignores anything else', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runyard-migrations-'));
  try {
    for (const f of ['0002_second.sql', '0001_first.sql', 'README.md', '12_short.sql', '0003_draft.sql.bak']) writeFileSync(join(dir, f), `-- ${f}`);
    const found = loadMigrations(dir + '/');
    assert.deepEqual(found.map((m) => [m.id, m.name]), [
      [1, '0001_first'],
      [2, '0002_second'],
    ]);
    assert.equal(found[0]!.sql, '-- 0001_first.sql');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const shipped = loadMigrations().map((m) => m.name);
  assert.equal(shipped[0], '0001_init');
  assert.deepEqual(shipped, [...shipped].sort());
});

for (const store of STORES) {
  describe(`migrate on ${store}`, () => {
    test('applies every migration once; a second run is a no-op', async () => {
      const { db, close } = await openEmpty(store);
      try {
        const all = loadMigrations().map((m) => m.name);
        assert.deepEqual(await migrate(db), all);
        assert.deepEqual(await migrate(db), []);
        const rows = await db.query<{ name: string }>('select name from runyard_migrations order by id');
        assert.deepEqual(rows.map((r) => r.name), all);
        assert.equal((await db.query('select * from meta')).length, 1, 'the init migration ran once');
        for (const t of ['jobs', 'runners', 'pools', 'tokens', 'events', 'job_logs', 'artifacts']) assert.ok(await tableExists(db, t), t);
      } finally {
        await close();
      }
    });

    test('an existing store is brought forward: only the newer migrations run, data kept', async () => {
      const { db, close } = await openEmpty(store);
      try {
        const [first, ...rest] = loadMigrations();
        assert.deepEqual(await migrate(db, [first!]), [first!.name]);
        await db.query(`insert into jobs (pool, state, commands, timeout_ms, created_at, queued_at) values ('p', 'queued', '["true"]', 1000, now(), now())`);
        assert.deepEqual(await migrate(db), rest.map((m) => m.name));
        assert.equal((await db.query(`select * from jobs where pool = 'p'`)).length, 1);
      } finally {
        await close();
      }
    });

    test('a schema from a newer server: additive migrations it applied are tolerated, a breaking one stops this server', async () => {
      const { db, close } = await openEmpty(store);
      try {
        const known = loadMigrations();
        const additive = { id: 9001, name: '9001_newer_column', sql: 'alter table jobs add column newer_note text;', breaking: false };
        const breaking = { id: 9002, name: '9002_newer_rename', sql: '-- breaking\nalter table jobs rename column newer_note to newer_text;', breaking: true };
        // A newer server applies one additive migration: this one still starts on that schema.
        await migrate(db, [...known, additive]);
        assert.deepEqual(await migrate(db, known), []);
        // Then a breaking one: this server refuses before it changes anything, naming it.
        await migrate(db, [...known, additive, breaking]);
        await assert.rejects(migrate(db, known), (err: unknown) => err instanceof SchemaTooNewError && /9002_newer_rename/.test(err.message) && /upgrade this server/.test(err.message));
        assert.deepEqual(loadMigrations().filter((m) => m.breaking), [], 'no shipped migration is breaking yet');
      } finally {
        await close();
      }
    });

    test('a failing migration is rolled back whole, reported by name, and releases the lock', async () => {
      const { db, url, close } = await openEmpty(store);
      try {
        const good = loadMigrations();
        const broken = { id: 9999, name: '9999_broken', sql: 'create table half_done (x int);\nselect no_such_column from no_such_table;', breaking: false };
        await assert.rejects(migrate(db, [...good, broken]), /migration 9999_broken failed: .*no_such_table/);
        assert.equal(await tableExists(db, 'half_done'), false, 'its first statement was rolled back');
        assert.equal((await db.query('select 1 from runyard_migrations where id = 9999')).length, 0);
        assert.equal(await tableExists(db, 'jobs'), true, 'the migrations before it stay applied');
        if (store === 'postgres') {
          // Another connection can take the lock at once: it was released.
          const other = new pg.Client({ connectionString: url });
          await other.connect();
          try {
            const [row] = (await other.query('select pg_try_advisory_lock(7302114001) as ok')).rows;
            assert.equal(row.ok, true);
            await other.query('select pg_advisory_unlock(7302114001)');
          } finally {
            await other.end();
          }
        }
        assert.deepEqual(await migrate(db, good), [], 'the store still works after the failure');
        assert.deepEqual(await migrate(db, [...good, { ...broken, sql: 'create table half_done (x int);' }]), ['9999_broken']);
      } finally {
        await close();
      }
    });
  });
}

describe('migrate: concurrent starts on one fresh PostgreSQL database', () => {
  test('four servers migrating at once all succeed and apply each migration once (3 rounds)', async () => {
    const all = loadMigrations().map((m) => m.name);
    for (let round = 0; round < 3; round++) {
      const { url, drop } = await createPgDatabase();
      // Separate pools: as separate server processes would, each migrates over its own connection.
      const dbs = await Promise.all(Array.from({ length: 4 }, () => openPostgres(url, { max: 2 })));
      try {
        const results = await Promise.all(dbs.map((db) => migrate(db)));
        const appliers = results.filter((r) => r.length > 0);
        assert.equal(appliers.length, 1, `exactly one migrator applied (round ${round}): ${JSON.stringify(results)}`);
        assert.deepEqual(appliers[0], all);
        assert.equal(results.filter((r) => r.length === 0).length, 3);
        const rows = await dbs[0]!.query<{ name: string }>('select name from runyard_migrations order by id');
        assert.deepEqual(rows.map((r) => r.name), all);
        assert.equal((await dbs[0]!.query('select * from meta')).length, 1);
      } finally {
        await Promise.all(dbs.map((db) => db.close()));
        await drop();
      }
    }
  });
});
