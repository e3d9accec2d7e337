/*
 * What a scheduler pass reads, in one statement: the pools, the live runners with what decide()
 * needs of them (only the rows written since its last read, see below), their active jobs in one
 * grouped read of jobs_active (not a count per runner), and the queue's depth by pool and image.
 */
import type { Queryable } from '../db.js';
import type { RunnerState } from './runners.js';
import type { PoolConfig } from '../../config/schema.js';

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
 * One statement a pass (a pass waits for each round trip on a busy server): three kinds of rows.
 *
 * 'r': runner rows. A runner row's xmin is the transaction that last wrote it, so the rows
 * written since a read are those whose xmin is at least that read's snapshot xmin (the oldest
 * transaction still running then: one that committed after the read has an xmin no lower). xmin
 * is a 32-bit counter; when it wraps, the caller reads everything again (`wrapped`). The first
 * 'r' row always comes (a left join on the snapshot) to carry the cursor.
 *
 * 'a': jobs claimed or running, by runner (they change without their runner's row).
 *
 * 'p': the pools (name, config, config hash), with their place in the order of names as `n`.
 *
 * 'q': queued jobs by pool and image. Those that asked for a dynamic image are counted exactly
 * (an index holds only them); a pool's own-image queue is counted up to twice what its runners
 * could hold at once (maxRunners × slots per runner): beyond that decide() plans the same (every
 * free slot is taken and the pool is started up to maxRunners either way), and a queue of
 * 100,000 costs a bounded index read instead of a scan on every pass.
 */
const NONE = `null::float8 as created_ms, null::float8 as registered_ms, null::float8 as idle_ms, null::int as slots, null::text as config_hash,
  null::int as jobs_started, null::boolean as ephemeral, null::text as provider`;
const NO_RUNNER = `null::float8, null::float8, null::float8, null::int`;
const NO_RUNNER_TAIL = `null::int, null::boolean, null::text`;
const SCHEDULER_READ = (runners: string) => `
  with snap as (select (pg_snapshot_xmin(pg_current_snapshot())::text::bigint % 4294967296) as x)
  select 'r' as kind, snap.x as snap_xmin, r.id::text as id, r.pool, r.state,
    (extract(epoch from r.created_at) * 1000)::float8 as created_ms, (extract(epoch from r.registered_at) * 1000)::float8 as registered_ms,
    (extract(epoch from r.idle_since) * 1000)::float8 as idle_ms, r.slots, r.config_hash, r.jobs_started, r.ephemeral, r.provider,
    r.image, null::int as n, null::jsonb as config
  from snap left join runners r on ${runners}
  union all
  select 'a', null, runner_id::text, null, null, ${NONE}, null, count(*)::int, null
  from jobs where state in ('claimed', 'running') and runner_id is not null group by runner_id
  union all
  select 'q', null, null, j.pool, null, ${NONE}, j.image, count(*)::int, null
  from jobs j where j.state = 'queued' and j.image is not null group by j.pool, j.image
  union all
  select 'q', null, null, p.name, null, ${NONE}, null, (select count(*)::int from (
      select 1 from jobs j where j.state = 'queued' and j.pool = p.name and j.image is null
      limit 2 * greatest(coalesce((p.config->>'maxRunners')::int, 0), 1)
          * case when coalesce((p.config->>'ephemeral')::boolean, false) then 1 else greatest(coalesce((p.config->>'maxJobsPerRunner')::int, 1), 1) end
    ) own), null
  from pools p
  union all
  select 'p', null, null, p.name, null, ${NO_RUNNER}, p.config_hash, ${NO_RUNNER_TAIL}, null, (row_number() over (order by p.name))::int, p.config
  from pools p`;

const READ_ALL = { name: 'scheduler_read_all', text: SCHEDULER_READ(`r.state <> 'terminated'`) };
const READ_SINCE = { name: 'scheduler_read_since', text: SCHEDULER_READ(`r.xmin::text::bigint >= $1`) };

export interface SchedulerRead {
  /** all live runners, or (`since` given) every runner written since, terminated included */
  runners: SchedulingRunner[];
  /** where the next read starts */
  cursor: number;
  /** the transaction counter wrapped since `since`: read everything again */
  wrapped: boolean;
  /** jobs claimed or running, by runner id */
  active: Map<string, number>;
  /** the pools, by name */
  pools: { name: string; config: PoolConfig; configHash: string }[];
  /** queued jobs by pool and image (null: the pool's own image), own-image counts capped as above */
  queued: { pool: string; image: string | null; n: number }[];
}

/** What a scheduler pass reads of runners and jobs; `since` is the cursor of an earlier read (null: everything). */
export async function schedulerRead(q: Queryable, since: number | null): Promise<SchedulerRead> {
  const rows = since === null ? await q.query(READ_ALL) : await q.query(READ_SINCE, [since]);
  const out: SchedulerRead = { runners: [], cursor: 0, wrapped: false, active: new Map(), pools: [], queued: [] };
  const pools: { at: number; pool: SchedulerRead['pools'][number] }[] = [];
  for (const r of rows) {
    if (r.kind === 'a') out.active.set(r.id, r.n);
    else if (r.kind === 'p') pools.push({ at: r.n, pool: { name: r.pool, config: r.config, configHash: r.config_hash } });
    else if (r.kind === 'q') {
      if (r.n > 0) out.queued.push({ pool: r.pool, image: r.image ?? null, n: r.n });
    } else {
      out.cursor = Number(r.snap_xmin);
      if (r.id === null) continue;
      out.runners.push({
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
  }
  out.pools = pools.sort((a, b) => a.at - b.at).map((p) => p.pool); // by name, as the store orders names
  out.wrapped = since !== null && out.cursor < since;
  return out;
}

/** A provider's live runners this server can see (its provider_ref ends in `@owner`), for reconcile. */
export async function liveRunnersOfProvider(q: Queryable, provider: string, owner: string): Promise<{ id: string; state: RunnerState }[]> {
  return q.query(`select id, state from runners where provider = $1 and state <> 'terminated' and provider_ref like $2`, [provider, `%@${owner}`]);
}
