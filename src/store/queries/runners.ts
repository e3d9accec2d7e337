/*
 * Runners: their rows, lookups and heartbeats. Their state changes, each with the states it may
 * start from, are in ./runner-transitions.ts; every transition is recorded in events with its reason.
 */
import type { Queryable } from '../db.js';
import { recordEvents } from './events.js';
import { NotFoundError } from '../../lib/errors.js';

export type RunnerState = 'starting' | 'idle' | 'busy' | 'draining' | 'offline' | 'disabled' | 'terminated';
export const LIVE_STATES: RunnerState[] = ['starting', 'idle', 'busy', 'draining', 'offline', 'disabled'];

export interface Runner {
  id: string;
  pool: string;
  name: string;
  state: RunnerState;
  stateReason: string | null;
  version: string | null;
  labels: string[];
  publicKey: string | null;
  slots: number;
  configHash: string | null;
  provider: string | null;
  providerRef: string | null;
  ephemeral: boolean;
  jobsStarted: number;
  createdAt: Date;
  registeredAt: Date | null;
  lastHeartbeatAt: Date | null;
  idleSince: Date | null;
  stateChangedAt: Date;
  terminatedAt: Date | null;
  /** the dynamic base image it runs (null: its pool's own image) */
  image: string | null;
  /** jobs claimed or running on it (derived) */
  activeJobs?: number;
}

export function toRunner(r: any): Runner {
  return {
    id: r.id,
    pool: r.pool,
    name: r.name,
    state: r.state,
    stateReason: r.state_reason,
    version: r.version,
    labels: r.labels ?? [],
    publicKey: r.public_key,
    slots: r.slots,
    configHash: r.config_hash,
    provider: r.provider,
    providerRef: r.provider_ref,
    ephemeral: r.ephemeral,
    jobsStarted: r.jobs_started,
    createdAt: r.created_at,
    registeredAt: r.registered_at,
    lastHeartbeatAt: r.last_heartbeat_at,
    idleSince: r.idle_since,
    stateChangedAt: r.state_changed_at,
    terminatedAt: r.terminated_at,
    image: r.image ?? null,
    ...(r.active_jobs !== undefined ? { activeJobs: r.active_jobs } : {}),
  };
}

const WITH_ACTIVE = `r.*, (select count(*)::int from jobs j where j.runner_id = r.id and j.state in ('claimed', 'running')) as active_jobs`;

export async function getRunner(q: Queryable, id: string, lock = false): Promise<Runner> {
  const [row] = await q.query(`select ${lock ? 'r.*' : WITH_ACTIVE} from runners r where id = $1 ${lock ? 'for update' : ''}`, [id]);
  if (!row) throw new NotFoundError(`runner ${id} not found`);
  return toRunner(row);
}

export async function findRunner(q: Queryable, id: string): Promise<Runner | undefined> {
  const [row] = await q.query(`select ${WITH_ACTIVE} from runners r where id = $1`, [id]);
  return row ? toRunner(row) : undefined;
}

export async function findRunnerState(q: Queryable, id: string): Promise<RunnerState | undefined> {
  const [row] = await q.query<{ state: RunnerState }>('select state from runners where id = $1', [id]);
  return row?.state;
}

export async function listRunners(q: Queryable, f: { pool?: string; state?: RunnerState[]; includeTerminated?: boolean; limit?: number } = {}): Promise<Runner[]> {
  const rows = await q.query(
    `select ${WITH_ACTIVE} from runners r
     where ($1::text is null or pool = $1) and ($2::text[] is null or state = any($2::text[])) and ($3 or state <> 'terminated')
     order by created_at desc, id limit $4`,
    [f.pool ?? null, f.state ?? null, f.includeTerminated ?? false, f.limit ?? 1000],
  );
  return rows.map(toRunner);
}

/** A runner row created by the scheduler before its provider starts it. */
export async function insertStartingRunner(
  q: Queryable,
  now: number,
  r: { id: string; pool: string; name: string; provider: string; configHash: string; slots: number; ephemeral: boolean; reason: string; image?: string | null },
): Promise<Runner> {
  const [row] = await q.query(
    `insert into runners (id, pool, name, state, state_reason, provider, config_hash, slots, ephemeral, created_at, state_changed_at, image)
     values ($1, $2, $3, 'starting', $4, $5, $6, $7, $8, $9, $9, $10) returning *`,
    [r.id, r.pool, r.name, r.reason, r.provider, r.configHash, r.slots, r.ephemeral, new Date(now), r.image ?? null],
  );
  const data = { pool: r.pool, provider: r.provider, ...(r.image ? { image: r.image } : {}) };
  await recordEvents(q, now, [{ kind: 'runner', subject: r.id, to: 'starting', reason: r.reason, actor: 'scheduler', data }]);
  return toRunner(row);
}

export async function setProviderRef(q: Queryable, id: string, ref: string): Promise<void> {
  await q.query('update runners set provider_ref = $2 where id = $1', [id, ref]);
}

export interface HeartbeatView {
  state: RunnerState;
  /** the jobs the server believes the runner holds */
  jobs: { id: number; attempt: number; cancel_requested: boolean; claimed_at: string }[];
}

const HEARTBEAT_VIEWS = {
  name: 'runner_heartbeat_views',
  // A lateral lookup per runner: its own entries of jobs_active, whatever plan the batch gets (a
  // generic plan could otherwise hash-join the whole index, dead entries included).
  text: `select r.id, r.state, coalesce(j.jobs, '[]') as jobs
         from runners r
         left join lateral (
           select json_agg(json_build_object('id', j.id, 'attempt', j.attempt, 'cancel_requested', j.cancel_requested, 'claimed_at', j.claimed_at)) as jobs
           from jobs j where j.runner_id = r.id and j.state in ('claimed', 'running')
         ) j on true
         where r.id = any($1::uuid[])`,
};

/**
 * What heartbeats answer from, for many runners in one prepared statement (heartbeats arrive
 * thousands of times a second and are read in batches, see src/app/heartbeat-buffer.ts).
 */
export async function heartbeatViews(q: Queryable, ids: string[]): Promise<Map<string, HeartbeatView>> {
  const rows = await q.query<HeartbeatView & { id: string }>(HEARTBEAT_VIEWS, [ids]);
  return new Map(rows.map((r) => [r.id, { state: r.state, jobs: r.jobs }]));
}

/** Coalesced heartbeats: one statement for many runners. */
export async function flushHeartbeats(q: Queryable, beats: { id: string; at: number; version: string }[]): Promise<void> {
  if (beats.length === 0) return;
  await q.query(
    `update runners r set last_heartbeat_at = greatest(r.last_heartbeat_at, b.at), version = b.version
     from jsonb_to_recordset($1::jsonb) as b(id uuid, at timestamptz, version text) where r.id = b.id`,
    [JSON.stringify(beats.map((b) => ({ id: b.id, at: new Date(b.at).toISOString(), version: b.version })))],
  );
}

/** Registered runners whose last heartbeat is older than `cutoff`. */
export async function findSilentRunners(q: Queryable, cutoff: number): Promise<Runner[]> {
  const rows = await q.query(
    `select * from runners where state in ('idle', 'busy', 'draining', 'disabled') and last_heartbeat_at < $1`,
    [new Date(cutoff)],
  );
  return rows.map(toRunner);
}

/**
 * After a claim or a finished job: busy when it holds jobs, otherwise idle (starting its idle
 * countdown). One statement for any number of runners, the state change's event included.
 */
export async function refreshBusyIdle(q: Queryable, now: number, ids: string | string[]): Promise<void> {
  const list = typeof ids === 'string' ? [ids] : [...new Set(ids)];
  if (list.length === 0) return;
  await q.query(
    { name: 'refresh_busy_idle', text: `with prev as (
       select id, state from runners where id = any($1::uuid[]) and state in ('idle', 'busy') order by id for update
     ), c as (
       select prev.id, prev.state, exists (select 1 from jobs j where j.runner_id = prev.id and j.state in ('claimed', 'running')) as has from prev
     ), upd as (
       update runners r set state = case when c.has then 'busy' else 'idle' end, state_changed_at = $2::timestamptz,
         state_reason = case when c.has then 'running jobs' else 'no jobs' end,
         idle_since = case when c.has then null else $2::timestamptz end
       from c
       where r.id = c.id and c.state <> case when c.has then 'busy' else 'idle' end
       returning r.id, c.state as prev_state, r.state, r.state_reason
     )
     insert into events (at, kind, subject, from_state, to_state, reason, actor)
     select $2, 'runner', id::text, prev_state, state, state_reason, id::text from upd` },
    [list, new Date(now)],
  );
}

/** Sets or clears an operator's hold (disabled or draining) that survives reconnects. */
export async function setHold(q: Queryable, id: string, hold: 'disabled' | 'draining' | null): Promise<void> {
  await q.query('update runners set hold = $2 where id = $1', [id, hold]);
}
