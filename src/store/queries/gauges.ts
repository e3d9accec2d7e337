/* What the Prometheus gauges show, counted when /metrics is read. */
import type { Queryable } from '../db.js';

/** Jobs queued, claimed or running, by pool and state. */
export async function activeJobCounts(q: Queryable): Promise<{ pool: string; state: string; n: number }[]> {
  return q.query(`select pool, state, count(*)::int as n from jobs where state in ('queued', 'claimed', 'running') group by pool, state`);
}

/** Live runners by pool and state. */
export async function liveRunnerCounts(q: Queryable): Promise<{ pool: string; state: string; n: number }[]> {
  return q.query(`select pool, state, count(*)::int as n from runners where state <> 'terminated' group by pool, state`);
}
