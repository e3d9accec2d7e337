/* Claim: queued jobs move to claimed for one runner, under FOR UPDATE SKIP LOCKED. */
import type { Queryable } from '../store/db.js';
import { NotFoundError } from '../lib/errors.js';
import { jobColumns, toJob, type ClaimedJob } from './job.js';

// Both claims end alike: the picked jobs move to claimed for `runner` at `at`, with their events.
const claimUpdate = (runner: string, at: string) => `upd as (
       update jobs j set state = 'claimed', runner_id = ${runner}, attempt = j.attempt + 1, claimed_at = ${at}, last_activity_at = ${at}, started_at = null,
         log_base = j.log_seq
       from picked where j.id = picked.id
       returning ${jobColumns('j')}, j.secrets_enc
     ), ev as (
       insert into events (at, kind, subject, from_state, to_state, reason, actor)
       select ${at}, 'job', id::text, 'queued', 'claimed', 'claimed by runner', ${runner}::text from upd
     )`;

const toClaimed = (r: any): ClaimedJob => ({ ...toJob(r), secretsEnc: r.secrets_enc });

/**
 * Atomically claims up to `max` queued jobs of `pool` for one runner. Concurrent claimers
 * skip each other's locked rows, so no job is ever handed to two runners. A runner takes only
 * jobs of its own image (`null`: the pool's image), so runners of different images never mix.
 */
export async function claimJobs(q: Queryable, now: number, runnerId: string, pool: string, max: number, image: string | null = null): Promise<ClaimedJob[]> {
  if (max <= 0) return [];
  const rows = await q.query(
    `with picked as (
       select id from jobs where state = 'queued' and pool = $1 and ($5::text is null and image is null or image = $5)
       order by id limit $2 for update skip locked
     ), ${claimUpdate('$3', '$4')}
     select * from upd order by id`,
    [pool, max, runnerId, new Date(now), image],
  );
  return rows.map(toClaimed);
}

export interface RunnerClaim {
  /** the runner's state when it asked (terminated: it must stop) */
  runnerState: string;
  publicKey: string | null;
  /** each with its pool's env under its own */
  jobs: ClaimedJob[];
}

/**
 * A runner's claim in one statement: locks the runner row, counts its free slots (none unless
 * idle or busy with its pool's current config; an ephemeral runner takes one job in its life),
 * claims jobs of its pool and image, bumps jobs_started, moves idle to busy, records the events.
 *
 * The slot count reads jobs as of the statement's start; a claim of the same runner that
 * commits while this one waits for the runner's lock would not be counted. That claim bumped
 * jobs_started, so the statement compares the locked row with the one it saw, claims nothing
 * when they differ, and runs again.
 */
export async function claimForRunner(q: Queryable, now: number, runnerId: string, max: number): Promise<RunnerClaim> {
  for (;;) {
    const rows = await q.query(
      { name: 'claim_for_runner', text: `with seen as (
         select jobs_started from runners where id = $1
       ), r as (
         select r.state, r.pool, r.image, r.public_key, r.jobs_started, p.config->'env' as pool_env,
           r.state in ('idle', 'busy') and (r.config_hash is null or r.config_hash = p.config_hash) as can_claim,
           least($2::int, r.slots - (select count(*)::int from jobs where runner_id = $1 and state in ('claimed', 'running')),
                 case when not r.ephemeral then $2::int when r.jobs_started > 0 then 0 else 1 end) as free
         from runners r join pools p on p.name = r.pool
         where r.id = $1
         for update of r
       ), lim as (
         select r.*, r.jobs_started <> (select jobs_started from seen) as raced from r
       ), picked as (
         select id from jobs
         where state = 'queued' and pool = (select pool from lim)
           and ((select image from lim) is null and image is null or image = (select image from lim))
         order by id
         limit coalesce((select case when can_claim and not raced then greatest(free, 0) else 0 end from lim), 0)
         for update skip locked
       ), ${claimUpdate('$1', '$3')}, bump as (
         update runners r set jobs_started = r.jobs_started + n.n,
           state = 'busy', state_reason = case when r.state = 'idle' then 'running jobs' else r.state_reason end,
           state_changed_at = case when r.state = 'idle' then $3 else r.state_changed_at end, idle_since = null
         from (select count(*)::int as n from upd) n
         where r.id = $1 and n.n > 0
         returning (select state from lim) as prev_state
       ), rev as (
         insert into events (at, kind, subject, from_state, to_state, reason, actor)
         select $3, 'runner', $1::text, prev_state, 'busy', 'running jobs', $1::text from bump where prev_state = 'idle'
       )
       select lim.state as r_state, lim.public_key as r_public_key, lim.pool_env as r_pool_env, lim.raced as r_raced, upd.*
       from lim left join upd on true order by upd.id` },
      [runnerId, max, new Date(now)],
    );
    const head = rows[0];
    if (!head) throw new NotFoundError(`runner ${runnerId} not found`);
    if (head.r_raced) continue;
    const env = head.r_pool_env ?? {};
    const jobs = rows.filter((r) => r.id !== null).map(toClaimed);
    for (const j of jobs) j.env = { ...env, ...j.env };
    return { runnerState: head.r_state, publicKey: head.r_public_key, jobs };
  }
}
