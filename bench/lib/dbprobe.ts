/*
 * Statement accounting for a running server, from the outside: wraps the Db handle's query and
 * transaction (the same object every part of the server holds) to count round trips and time
 * them by statement. Nothing in src/ is changed; the wrapper costs ~1 µs per statement.
 */
import type { Db, Queryable, Statement } from '../../src/store/db.js';

export interface StatementStat {
  sql: string;
  count: number;
  ms: number;
}

/** A short, stable label for a statement: its first words with whitespace collapsed. */
export function label(sql: Statement): string {
  if (typeof sql !== 'string') return `${sql.name} (prepared)`;
  const s = sql.replace(/\s+/g, ' ').trim();
  const named: [RegExp, string][] = [
    [/^with picked as/, 'claimJobs: with picked … update jobs … insert events'],
    [/^with ins as \( insert into jobs/, 'enqueue: insert into jobs … insert events'],
    [/^with upd as \( update jobs set state = 'running'/, "markRunning: update jobs set state='running' … insert events"],
    [/^with j as \( update jobs set last_activity_at/, 'appendLogs: update jobs … insert job_logs'],
    [/^with prev as \( select id, state from runners where id = any/, 'refreshBusyIdle: runners … update runners … insert events'],
    [/^with seen as \( select jobs_started from runners/, 'claimForRunner: lock runner … claim jobs … update runner … insert events'],
    [/^with r as \( select \* from jsonb_to_recordset\(\$2::jsonb\) as r\(ord int, id bigint, runner_id uuid/, 'completeJobs: update jobs from jsonb_to_recordset … insert events'],
    [/^update runners r set last_heartbeat_at/, 'flushHeartbeats: update runners from jsonb_to_recordset'],
    [/^select r\.\*, \(select count\(\*\)::int from jobs j where j\.runner_id = r\.id and j\.state in \('claimed', 'running'\)\) as active_jobs from runners r where r\.state <> 'terminated'/, 'scheduler.gather: runners with active job counts'],
    [/^select pool, count\(\*\)::int as n from jobs where state = 'queued' group by pool/, "scheduler.gather: count queued jobs per pool"],
  ];
  for (const [re, name] of named) if (re.test(s)) return name;
  return s.length > 110 ? s.slice(0, 107) + '…' : s;
}

export class DbProbe {
  readonly stats = new Map<string, StatementStat>();
  transactions = 0;
  statements = 0;
  private enabled = true;

  constructor(db: Db) {
    const record = (sql: Statement, ms: number) => {
      if (!this.enabled) return;
      const key = label(sql);
      let s = this.stats.get(key);
      if (!s) this.stats.set(key, (s = { sql: key, count: 0, ms: 0 }));
      s.count++;
      s.ms += ms;
      this.statements++;
    };
    const wrap = (q: Queryable['query']): Queryable['query'] =>
      (async (sql: Statement, params?: unknown[]) => {
        const t = performance.now();
        try {
          return await q(sql, params);
        } finally {
          record(sql, performance.now() - t);
        }
      }) as Queryable['query'];
    const d = db as any;
    const query = d.query.bind(db);
    const transaction = d.transaction.bind(db);
    d.query = wrap(query);
    d.transaction = async (fn: (tx: Queryable) => Promise<unknown>) => {
      const t = performance.now();
      try {
        return await transaction((tx: Queryable) => fn({ query: wrap(tx.query.bind(tx)) }));
      } finally {
        if (this.enabled) {
          this.transactions++;
          const s = this.stats.get('(transaction: begin … commit, whole)') ?? { sql: '(transaction: begin … commit, whole)', count: 0, ms: 0 };
          s.count++;
          s.ms += performance.now() - t;
          this.stats.set(s.sql, s);
        }
      }
    };
  }

  /** Clears the counts and starts counting. */
  reset(): void {
    this.stats.clear();
    this.transactions = 0;
    this.statements = 0;
    this.enabled = true;
  }

  pause(): void {
    this.enabled = false;
  }

  resume(): void {
    this.enabled = true;
  }

  /** Statements sorted by total time; `perJob` divides counts and times by the jobs done. */
  table(perJob: number, top = 14): { headers: string[]; rows: (string | number)[][] } {
    const all = [...this.stats.values()].sort((a, b) => b.ms - a.ms).slice(0, top);
    return {
      headers: ['statement', 'calls per job', 'ms per call', 'ms per job'],
      rows: all.map((s) => [s.sql, +(s.count / perJob).toFixed(3), +(s.ms / s.count).toFixed(3), +(s.ms / perJob).toFixed(3)]),
    };
  }

  /** Round trips per job: statements plus BEGIN and COMMIT of each transaction. */
  roundTripsPerJob(jobs: number): number {
    return (this.statements + 2 * this.transactions) / jobs;
  }
}
