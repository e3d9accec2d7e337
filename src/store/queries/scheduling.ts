/*
 * What a scheduler pass reads: every live runner with what decide() needs of it, and the queue's
 * depth by pool and image. Two statements per pass whatever the fleet's size: the active-job
 * counts come from one grouped read of jobs_active, not a count per runner.
 */
import type { Queryable } from '../db.js';
import type { RunnerState } from './runners.js';

/** A live runner as the scheduler sees it (times in epoch ms). */
export interface SchedulingRunner {
  id: string;
  pool: string;
  state: RunnerState;
  createdAt: number;
  registeredAt: number | null;
  idleSince: number | null;
  activeJobs: number;
  slots: number;
  configHash: string | null;
  jobsStarted: number;
  ephemeral: boolean;
  provider: string | null;
  image: string | null;
}

const SCHEDULING_RUNNERS = {
  name: 'scheduling_runners',
  text: `select r.id, r.pool, r.state, r.created_at, r.registered_at, r.idle_since, r.slots, r.config_hash, r.jobs_started, r.ephemeral,
           r.provider, r.image, coalesce(a.n, 0)::int as active_jobs
         from runners r
         left join (select runner_id, count(*)::int as n from jobs where state in ('claimed', 'running') group by runner_id) a on a.runner_id = r.id
         where r.state <> 'terminated'`,
};

const ms = (d: Date | null) => (d ? d.getTime() : null);

export async function schedulingRunners(q: Queryable): Promise<SchedulingRunner[]> {
  const rows = await q.query(SCHEDULING_RUNNERS);
  return rows.map((r) => ({
    id: r.id,
    pool: r.pool,
    state: r.state,
    createdAt: r.created_at.getTime(),
    registeredAt: ms(r.registered_at),
    idleSince: ms(r.idle_since),
    activeJobs: r.active_jobs,
    slots: r.slots,
    configHash: r.config_hash,
    jobsStarted: r.jobs_started,
    ephemeral: r.ephemeral,
    provider: r.provider,
    image: r.image ?? null,
  }));
}

/** Queued jobs by pool and image (null: the pool's own image). */
export async function queuedByPoolAndImage(q: Queryable): Promise<{ pool: string; image: string | null; n: number }[]> {
  return q.query({ name: 'queued_by_pool_image', text: `select pool, image, count(*)::int as n from jobs where state = 'queued' group by pool, image` });
}

/** A provider's live runners this server can see (its provider_ref ends in `@owner`), for reconcile. */
export async function liveRunnersOfProvider(q: Queryable, provider: string, owner: string): Promise<{ id: string; state: RunnerState }[]> {
  return q.query(`select id, state from runners where provider = $1 and state <> 'terminated' and provider_ref like $2`, [provider, `%@${owner}`]);
}
