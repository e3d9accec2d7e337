import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// Arbitrary constant: every runyard server takes this advisory lock while it migrates.
const MIGRATION_LOCK = 7_302_114_001;

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((f) => ({ id: Number(f.slice(0, 4)), name: f.replace(/\.sql$/, ''), sql: readFileSync(dir + f, 'utf8') }));
}

/** Applies pending forward-only migrations under an advisory lock; returns the names applied. */
export async function migrate(db: Db, migrations = loadMigrations()): Promise<string[]> {
  return db.withSession(async (session) => {
    await session.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await session.query(
        'create table if not exists runyard_migrations (id int primary key, name text not null, applied_at timestamptz not null default now())',
      );
      const done = new Set((await session.query<{ id: number }>('select id from runyard_migrations')).map((r) => r.id));
      const applied: string[] = [];
      for (const m of migrations.filter((m) => !done.has(m.id))) {
        // Each migration runs in its own transaction with its bookkeeping row.
        await session.query('begin');
        try {
          await runScript(db, session, m.sql);
          await session.query('insert into runyard_migrations (id, name) values ($1, $2)', [m.id, m.name]);
          await session.query('commit');
        } catch (err) {
          await session.query('rollback');
          throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
        }
        applied.push(m.name);
      }
      return applied;
    } finally {
      await session.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  });
}

async function runScript(db: Db, session: { query(sql: string): Promise<unknown> }, sql: string) {
  // pg runs a multi-statement script as one simple query; PGlite needs exec() for that.
  if (db.kind === 'pglite') await db.exec(sql);
  else await session.query(sql);
}
