/*
 * Experiment (not part of `npm run bench`): what named prepared statements would save on
 * runyard's hottest statements. node-postgres sends every query unnamed: PostgreSQL parses and
 * plans it each time. Named statements are parsed and planned once per connection.
 *   node --import tsx bench/experiments/prepared.ts
 */
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { openPostgres } from '../../src/store/db.js';
import { migrate } from '../../src/store/migrate.js';
import { enqueue } from '../../src/queue/submit.js';
import { createBenchDatabase } from '../lib/pg.js';

const d = await createBenchDatabase('prep');
const db = await openPostgres(d.url);
await migrate(db);
await enqueue(db, Date.now(), Array.from({ length: 200 }, () => ({ pool: 'bench', commands: ['true'], timeoutMs: 60_000 })));
const runner = randomUUID();
await db.query(`insert into runners (id, pool, name, state, created_at, state_changed_at) values ($1, 'bench', 'x', 'idle', now(), now())`, [runner]);
await db.close();

const client = new pg.Client({ connectionString: d.url });
await client.connect();
const statements: [string, string, unknown[]][] = [
  [
    'heartbeat (one query, src since 66c2e01)',
    `select r.state, coalesce(json_agg(json_build_object('id', j.id, 'attempt', j.attempt, 'cancel_requested', j.cancel_requested, 'claimed_at', j.claimed_at))
                                 filter (where j.id is not null), '[]') as jobs
       from runners r left join jobs j on j.runner_id = r.id and j.state in ('claimed', 'running')
       where r.id = $1 group by r.state`,
    [runner],
  ],
  ['heartbeat: select state from runners where id = $1', 'select state from runners where id = $1', [runner]],
  ['heartbeat: active jobs of a runner', `select id, attempt, cancel_requested, claimed_at, state from jobs where runner_id = $1 and state in ('claimed', 'running')`, [runner]],
  ['claim: count active jobs of a runner', `select count(*)::int as n from jobs where runner_id = $1 and state in ('claimed', 'running')`, [runner]],
  [
    'refreshBusyIdle CTE (no change)',
    `with c as (select count(*)::int as n from jobs where runner_id = $1 and state in ('claimed', 'running')),
     upd as (
       update runners r set state = case when c.n > 0 then 'busy' else 'idle' end, state_changed_at = $2::timestamptz,
         state_reason = case when c.n > 0 then 'running jobs' else 'no jobs' end,
         idle_since = case when c.n > 0 then null else $2::timestamptz end
       from c, (select state from runners where id = $1 for update) prev
       where r.id = $1 and r.state in ('idle', 'busy') and r.state <> case when c.n > 0 then 'busy' else 'idle' end
       returning r.state, prev.state as prev_state
     )
     select * from upd`,
    [runner, new Date()],
  ],
];
for (const [name, text, values] of statements) {
  const res: string[] = [];
  for (const named of [false, true]) {
    const q = named ? { name: 'p_' + Math.abs(hash(text)), text, values } : { text, values };
    for (let i = 0; i < 300; i++) await client.query(q as any);
    const N = 3000;
    const t0 = performance.now();
    for (let i = 0; i < N; i++) await client.query(q as any);
    res.push(`${named ? 'named' : 'unnamed'} ${(((performance.now() - t0) / N) * 1000).toFixed(0)} µs`);
  }
  console.log(`${name.padEnd(52)} round trip: ${res.join(', ')}`);
}
await client.end();
await d.drop();

function hash(s: string) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return h;
}
