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
  /** Declared by a first line `-- breaking`: servers that predate it cannot run on the schema. */
  breaking: boolean;
}

/** The database holds a breaking migration this server does not know: it must not run on it. */
export class SchemaTooNewError extends Error {
  constructor(readonly unknown: string[]) {
    super(
      `the database schema is newer than this runyard (${unknown.join(', ')} changed it in a way this version cannot work with); ` +
        'upgrade this server to the version that applied it, or point it at another database',
    );
    this.name = 'SchemaTooNewError';
  }
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((f) => {
      const sql = readFileSync(dir + f, 'utf8');
      return { id: Number(f.slice(0, 4)), name: f.replace(/\.sql$/, ''), sql, breaking: /^--\s*breaking\b/i.test(sql) };
    });
}

/**
 * Applies pending forward-only migrations under an advisory lock; returns the names applied.
 *
 * In a rolling upgrade two versions share one database: a newer server may already have applied
 * migrations this one does not know. Additive ones (a column, an index) are fine and only noted in
 * `unknown`; a breaking one (marked `-- breaking`) stops this server with SchemaTooNewError before
 * it touches anything, as graphile-worker guards its own schema.
 */
export async function migrate(db: Db, migrations = loadMigrations()): Promise<string[]> {
  return db.withSession(async (session) => {
    await session.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await session.query(
        'create table if not exists runyard_migrations (id int primary key, name text not null, applied_at timestamptz not null default now())',
      );
      await session.query('alter table runyard_migrations add column if not exists breaking boolean not null default false');
      const rows = await session.query<{ id: number; name: string; breaking: boolean }>('select id, name, breaking from runyard_migrations');
      const known = new Set(migrations.map((m) => m.id));
      const unknownBreaking = rows.filter((r) => !known.has(r.id) && r.breaking).map((r) => r.name);
      if (unknownBreaking.length) throw new SchemaTooNewError(unknownBreaking);
      const done = new Set(rows.map((r) => r.id));
      const applied: string[] = [];
      for (const m of migrations.filter((m) => !done.has(m.id))) {
        // Each migration runs in its own transaction with its bookkeeping row.
        await session.query('begin');
        try {
          await runScript(db, session, m.sql);
          await session.query('insert into runyard_migrations (id, name, breaking) values ($1, $2, $3)', [m.id, m.name, m.breaking]);
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
