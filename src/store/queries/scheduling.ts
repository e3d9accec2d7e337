/*
 * What a scheduler pass reads: the live runners with what decide() needs of them (only the rows
 * written since its last read, see below), their active jobs in one grouped read of jobs_active
 * (not a count per runner), and the queue's depth by pool and image.
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
  /** the dynamic base image it runs; null for the pool's own image */
  image: string | null;
}

/*
 * A runner row's xmin is the transaction that last wrote it, so the rows written since a read are
 * those whose xmin is at least that read's snapshot xmin (the oldest transaction still running
 * then: one that committed after the read has an xmin no lower). xmin is a 32-bit counter; when
 * it wraps, the caller reads everything again (`wrapped`).
 */
const RUNNER_COLUMNS = `r.id, r.pool, r.state, (extract(epoch from r.created_at) * 1000)::float8 as created_ms,
  (extract(epoch from r.registered_at) * 1000)::float8 as registered_ms, (extract(epoch from r.idle_since) * 1000)::float8 as idle_ms,
  r.slots, r.config_hash, r.jobs_started, r.ephemeral, r.provider, r.image`;

const ALL_LIVE_RUNNERS = {
  name: 'scheduling_runners_all',
  text: `with snap as (select (pg_snapshot_xmin(pg_current_snapshot())::text::bigint % 4294967296) as x)
         select snap.x as snap_xmin, ${RUNNER_COLUMNS} from snap left join runners r on r.state <> 'terminated'`,
};

const RUNNERS_WRITTEN_SINCE = {
  name: 'scheduling_runners_since',
  text: `with snap as (select (pg_snapshot_xmin(pg_current_snapshot())::text::bigint % 4294967296) as x)
         select snap.x as snap_xmin, ${RUNNER_COLUMNS} from snap left join runners r on r.xmin::text::bigint >= $1`,
};

const ACTIVE_JOBS_BY_RUNNER = {
  name: 'active_jobs_by_runner',
  text: `select runner_id, count(*)::int as n from jobs where state in ('claimed', 'running') and runner_id is not null group by runner_id`,
};

/** Runner rows for the scheduler: all live ones, or (`since`, a cursor from an earlier read) every one written since, terminated included. */
export async function schedulingRunnerRows(q: Queryable, since: number | null): Promise<{ runners: SchedulingRunner[]; cursor: number; wrapped: boolean }> {
  const rows = since === null ? await q.query(ALL_LIVE_RUNNERS) : await q.query(RUNNERS_WRITTEN_SINCE, [since]);
  const cursor = Number(rows[0]!.snap_xmin);
  const runners: SchedulingRunner[] = [];
  for (const r of rows) {
    if (r.id === null) continue;
    runners.push({
      id: r.id,
      pool: r.pool,
      state: r.state,
      createdAt: r.created_ms,
      registeredAt: r.registered_ms,
      idleSince: r.idle_ms,
      activeJobs: 0,
      slots: r.slots,
      configHash: r.config_hash,
      jobsStarted: r.jobs_started,
      ephemeral: r.ephemeral,
      provider: r.provider,
      image: r.image ?? null,
    });
  }
  return { runners, cursor, wrapped: since !== null && cursor < since };
}

/** Jobs claimed or running, by runner. */
export async function activeJobsByRunner(q: Queryable): Promise<Map<string, number>> {
  const rows = await q.query<{ runner_id: string; n: number }>(ACTIVE_JOBS_BY_RUNNER);
  return new Map(rows.map((r) => [r.runner_id, r.n]));
}

/*
 * Queued jobs by pool and image. Those that asked for a dynamic image are counted exactly (an
 * index holds only them); a pool's own-image queue is counted up to twice what its runners could
 * hold at once (maxRunners × slots per runner, see QUEUE_COUNT_CAP): beyond that decide() plans
 * the same (every free slot is taken and the pool is started up to maxRunners either way), and a
 * queue of 100,000 costs a bounded index read instead of a scan on every pass.
 */
const QUEUED_BY_POOL_IMAGE = {
  name: 'queued_by_pool_image',
  text: `select j.pool, j.image, count(*)::int as n from jobs j where j.state = 'queued' and j.image is not null group by j.pool, j.image
         union all
         select p.name, null, (select count(*)::int from (
             select 1 from jobs j where j.state = 'queued' and j.pool = p.name and j.image is null
             limit 2 * greatest(coalesce((p.config->>'maxRunners')::int, 0), 1)
                 * case when coalesce((p.config->>'ephemeral')::boolean, false) then 1 else greatest(coalesce((p.config->>'maxJobsPerRunner')::int, 1), 1) end
           ) own)
         from pools p`,
};

/** Queued jobs by pool and image (null: the pool's own image); own-image counts are capped as above. */
export async function queuedByPoolAndImage(q: Queryable): Promise<{ pool: string; image: string | null; n: number }[]> {
  return (await q.query<{ pool: string; image: string | null; n: number }>(QUEUED_BY_POOL_IMAGE)).filter((r) => r.n > 0);
}

/** A provider's live runners this server can see (its provider_ref ends in `@owner`), for reconcile. */
export async function liveRunnersOfProvider(q: Queryable, provider: string, owner: string): Promise<{ id: string; state: RunnerState }[]> {
  return q.query(`select id, state from runners where provider = $1 and state <> 'terminated' and provider_ref like $2`, [provider, `%@${owner}`]);
}
