/*
 * Every change of a runner's state, with the states it may start from, in one table. Whoever
 * moves a runner (the runner protocol, an operator, the scheduler, recovery, a termination) names
 * a transition here; one from a state not listed changes nothing and says why.
 *
 *   starting ──register──▶ idle ⇄ busy ──drain──▶ draining ──terminate──▶ terminated
 *                            │      │
 *           offline ◀── no heartbeat / agent stopped      disable ─▶ disabled ─ enable ─▶ idle|busy
 *              └── resume (heartbeats again) ─▶ its operator hold, else idle|busy
 *
 * Two moves are made inside the queue's statements, for speed, with the same rule: idle → busy
 * when a claim takes jobs (claimForRunner, src/queue/claim.ts) and busy ⇄ idle after results
 * (refreshBusyIdle, ./runners.ts); both touch only runners that are idle or busy.
 */
import type { Queryable } from '../db.js';
import { recordEvents } from './events.js';
import { GoneError } from '../../lib/errors.js';
import { LIVE_STATES, refreshBusyIdle, toRunner, type Runner, type RunnerState } from './runners.js';

interface TransitionRule {
  from: readonly RunnerState[];
  to: RunnerState;
  /** how a refusal names it: "it can only be <verb> when …" */
  verb: string;
}

export const RUNNER_TRANSITIONS = {
  /** registration (first or again after a restart): anything but terminated; an unknown id is new */
  register: { from: ['starting', 'idle', 'busy', 'draining', 'offline', 'disabled'], to: 'idle', verb: 'registered' },
  disable: { from: ['idle', 'busy', 'offline'], to: 'disabled', verb: 'disabled' },
  enable: { from: ['disabled'], to: 'idle', verb: 'enabled' },
  /** finish the jobs it has, take no more (operator drain or terminate, the scheduler's drain) */
  drain: { from: ['idle', 'busy', 'disabled'], to: 'draining', verb: 'drained' },
  /** the scheduler's way to stop a runner without jobs: a busy one keeps running */
  drainIdle: { from: ['idle', 'disabled'], to: 'draining', verb: 'stopped by the scheduler' },
  /** heartbeats stopped, or the agent said it stops */
  offline: { from: ['idle', 'busy', 'draining', 'disabled'], to: 'offline', verb: 'marked offline' },
  /** heartbeats again after offline: back to its operator hold (disabled, draining), else idle */
  resume: { from: ['offline'], to: 'idle', verb: 'resumed' },
  terminate: { from: LIVE_STATES, to: 'terminated', verb: 'terminated' },
} as const satisfies Record<string, TransitionRule>;

export type RunnerTransition = keyof typeof RUNNER_TRANSITIONS;

export type TransitionOutcome =
  | { moved: true; runner: Runner; from: RunnerState }
  /** nothing changed: the runner is unknown (state undefined) or in a state the transition does not start from */
  | { moved: false; state: RunnerState | undefined; refusal: string };

const orList = (xs: readonly string[]) => (xs.length > 1 ? `${xs.slice(0, -1).join(', ')} or ${xs[xs.length - 1]}` : (xs[0] ?? 'never'));

/** Whether `transition` may start from `state` (undefined: a runner not known yet, which only registration creates). */
export function transitionAllowed(transition: RunnerTransition, state: RunnerState | undefined): boolean {
  if (state === undefined) return transition === 'register';
  return (RUNNER_TRANSITIONS[transition].from as readonly RunnerState[]).includes(state);
}

/** Why `transition` does not apply to runner `id` in `state`. */
export function refusal(transition: RunnerTransition, id: string, state: RunnerState | undefined): string {
  const rule = RUNNER_TRANSITIONS[transition];
  if (state === undefined) return `runner ${id} not found`;
  return `runner ${id} is ${state}: it can only be ${rule.verb} when ${orList(rule.from)}`;
}

/**
 * Moves runner `id` by `transition`, under the runner's row lock, with its event in the same
 * transaction as the caller's. `to` is for resume only (the runner's operator hold).
 */
export async function moveRunner(
  q: Queryable,
  now: number,
  id: string,
  transition: RunnerTransition,
  reason: string,
  opts: { actor?: string; to?: RunnerState } = {},
): Promise<TransitionOutcome> {
  const rule = RUNNER_TRANSITIONS[transition];
  const to = opts.to ?? rule.to;
  const at = new Date(now);
  const [row] = await q.query(
    `with prev as (select id, state from runners where id = $1 for update), upd as (
       update runners r set state = $2, state_reason = $3, state_changed_at = $4,
         idle_since = case when $2 = 'idle' then coalesce(r.idle_since, $4) else null end,
         terminated_at = case when $2 = 'terminated' then $4 else r.terminated_at end
       from prev where r.id = prev.id and prev.state <> $2 and prev.state = any($5::text[])
       returning r.*
     )
     select prev.state as prev_state, upd.* from prev left join upd on true`,
    [id, to, reason, at, rule.from],
  );
  if (!row || row.id === null) return { moved: false, state: row?.prev_state, refusal: refusal(transition, id, row?.prev_state) };
  await recordEvents(q, now, [{ kind: 'runner', subject: id, from: row.prev_state, to, reason, actor: opts.actor ?? 'scheduler' }]);
  return { moved: true, runner: toRunner(row), from: row.prev_state };
}

/**
 * Registers (or re-registers after a restart) a runner. A runner the scheduler created is
 * moved from starting to idle; an unknown id (an agent started by hand) is inserted. A
 * terminated runner is not brought back (GoneError): its agent must start with a fresh identity.
 */
export async function registerRunner(
  q: Queryable,
  now: number,
  r: { id: string; pool: string; name: string; version: string; publicKey: string; labels: string[]; slots: number; configHash: string; ephemeral: boolean },
): Promise<{ runner: Runner; from: RunnerState | null }> {
  const [prev] = await q.query('select state from runners where id = $1 for update', [r.id]);
  if (prev && !transitionAllowed('register', prev.state)) throw new GoneError(refusal('register', r.id, prev.state));
  const at = new Date(now);
  const [row] = await q.query(
    `insert into runners (id, pool, name, state, state_reason, version, labels, public_key, slots, config_hash, ephemeral, provider,
                          created_at, registered_at, last_heartbeat_at, idle_since, state_changed_at)
     values ($1, $2, $3, 'idle', 'registered', $4, $5, $6, $7, $8, $9, 'manual', $10, $10, $10, $10, $10)
     on conflict (id) do update set name = excluded.name, state = coalesce(runners.hold, 'idle'), state_reason = 'registered', version = excluded.version,
       labels = excluded.labels, public_key = excluded.public_key, slots = excluded.slots,
       -- a hand-started agent takes the current config when it registers again; a launched one keeps what it was launched with
       config_hash = case when runners.provider = 'manual' then excluded.config_hash else coalesce(runners.config_hash, excluded.config_hash) end,
       registered_at = excluded.registered_at,
       last_heartbeat_at = excluded.last_heartbeat_at, idle_since = excluded.idle_since, state_changed_at = excluded.state_changed_at
     returning *`,
    [r.id, r.pool, r.name, r.version, JSON.stringify(r.labels), r.publicKey, r.slots, r.configHash, r.ephemeral, at],
  );
  await recordEvents(q, now, [{ kind: 'runner', subject: r.id, from: prev?.state ?? null, to: row.state, reason: prev ? 're-registered' : 'registered', actor: r.id }]);
  return { runner: toRunner(row), from: prev?.state ?? null };
}


/**
 * A runner whose heartbeats resumed returns to its operator hold, else to idle or busy (a runner
 * that is not offline is only brought in step with its jobs).
 */
export async function resumeRunner(q: Queryable, now: number, id: string): Promise<TransitionOutcome> {
  const [row] = await q.query<{ hold: RunnerState | null }>('select hold from runners where id = $1', [id]);
  const out = await moveRunner(q, now, id, 'resume', 'heartbeats resumed', { actor: id, ...(row?.hold ? { to: row.hold } : {}) });
  if (!row?.hold) await refreshBusyIdle(q, now, id);
  return out;
}
