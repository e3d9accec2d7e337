/*
 * The scaling decision: a pure function from what the store and providers report to a plan.
 * No I/O and no clock reads here — `now` is an argument — so it is tested with tables of cases.
 */
import type { PoolConfig } from '../config/schema.js';
import type { RunnerState } from '../store/queries/runners.js';

export interface RunnerView {
  id: string;
  state: RunnerState;
  createdAt: number;
  idleSince: number | null;
  activeJobs: number;
  slots: number;
  configHash: string | null;
  jobsStarted: number;
  ephemeral: boolean;
  provider: string | null;
}

export interface PoolView {
  config: PoolConfig;
  configHash: string;
  queued: number;
  runners: RunnerView[];
  /** consecutive failed starts and when the last one happened, for backoff */
  startFailures: { count: number; lastAt: number };
}

export type Action =
  | { kind: 'start'; pool: string; count: number; reason: string }
  | { kind: 'drain'; pool: string; runnerId: string; reason: string }
  | { kind: 'terminate'; pool: string; runnerId: string; reason: string };

export const START_BACKOFF_BASE_MS = 5_000;
export const START_BACKOFF_MAX_MS = 300_000;

export function startBackoff(failures: number): number {
  return failures <= 0 ? 0 : Math.min(START_BACKOFF_BASE_MS * 2 ** (failures - 1), START_BACKOFF_MAX_MS);
}

/** Runners of pools whose provider runyard manages (hand-started agents are never scaled). */
const managed = (r: RunnerView) => r.provider !== 'manual' && r.provider !== null;

export function decide(pools: PoolView[], now: number): Action[] {
  return pools.flatMap((p) => decidePool(p, now));
}

export function decidePool(p: PoolView, now: number): Action[] {
  const { config: c } = p;
  const actions: Action[] = [];
  const pool = c.name;
  const gone = new Set<string>();
  const stop = (kind: 'drain' | 'terminate', r: RunnerView, reason: string) => {
    actions.push({ kind, pool, runnerId: r.id, reason });
    gone.add(r.id);
  };

  for (const r of p.runners) {
    if (r.state === 'terminated') continue;
    const stale = r.configHash !== null && r.configHash !== p.configHash;
    const expired = now - r.createdAt >= c.maxLifetime;
    if (r.state === 'offline') {
      if (managed(r)) stop('terminate', r, 'offline: no heartbeat');
    } else if (r.state === 'starting') {
      if (now - r.createdAt >= c.startTimeout) stop('terminate', r, `did not register within ${Math.round(c.startTimeout / 1000)}s`);
      else if (stale) stop('terminate', r, 'pool config changed before it registered');
    } else if (r.state === 'draining') {
      continue; // already on its way out
    } else if (!managed(r)) {
      continue;
    } else if (stale) {
      stop(r.activeJobs > 0 ? 'drain' : 'terminate', r, 'pool config changed');
    } else if (expired) {
      stop(r.activeJobs > 0 ? 'drain' : 'terminate', r, `older than maxLifetime (${Math.round(c.maxLifetime / 1000)}s)`);
    } else if (r.ephemeral && r.jobsStarted > 0 && r.activeJobs === 0) {
      stop('terminate', r, 'ephemeral runner finished its job');
    }
  }

  const live = p.runners.filter((r) => r.state !== 'terminated');
  // Runners that can take work: registered (idle/busy) or on their way (starting), current config.
  const usable = live.filter((r) => !gone.has(r.id) && (r.state === 'idle' || r.state === 'busy' || r.state === 'starting'));
  const slotsPer = c.ephemeral ? 1 : c.maxJobsPerRunner;
  const freeSlots = (r: RunnerView) => (r.ephemeral || c.ephemeral ? (r.jobsStarted === 0 && r.activeJobs === 0 ? 1 : 0) : Math.max(0, r.slots - r.activeJobs));
  const free = usable.reduce((n, r) => n + freeSlots(r), 0);
  const shortfall = Math.max(0, p.queued - free);
  const forDemand = Math.ceil(shortfall / slotsPer);

  // Warm runners: idle ones not needed for the queue. Queued work lands on busy runners' free
  // slots first, then on idle runners.
  const idle = usable.filter((r) => r.activeJobs === 0 && freeSlots(r) > 0);
  const busyFree = usable.filter((r) => r.activeJobs > 0).reduce((n, r) => n + freeSlots(r), 0);
  const idleTaken = Math.min(idle.length, Math.ceil(Math.max(0, p.queued - busyFree) / slotsPer));
  const idleLeft = idle.length - idleTaken;
  const forWarm = Math.max(0, c.minIdle - idleLeft);

  // The cap counts every live runner, even one being drained: it is a hard limit on compute.
  const headroom = Math.max(0, c.maxRunners - live.length);
  let start = Math.min(forDemand + forWarm, headroom);
  const backoff = startBackoff(p.startFailures.count);
  if (start > 0 && backoff > 0 && now - p.startFailures.lastAt < backoff) start = 0;
  if (start > 0) {
    const why = [forDemand ? `${p.queued} queued, ${free} free slots` : '', forWarm ? `keep ${c.minIdle} warm` : ''].filter(Boolean).join('; ');
    actions.push({ kind: 'start', pool, count: start, reason: why });
  }

  // Scale down: idle past idleTimeout, above minIdle, and only when nothing waits.
  if (p.queued === 0) {
    const idleRegistered = usable
      .filter((r) => r.state === 'idle' && r.activeJobs === 0 && r.idleSince !== null && managed(r))
      .sort((a, b) => b.idleSince! - a.idleSince!); // most recently idle first: those are kept warm
    const keep = Math.max(0, c.minIdle - usable.filter((r) => r.state === 'starting').length);
    for (const r of idleRegistered.slice(keep)) {
      if (now - r.idleSince! >= c.idleTimeout) stop('terminate', r, `idle for ${Math.round((now - r.idleSince!) / 1000)}s (idleTimeout ${Math.round(c.idleTimeout / 1000)}s)`);
    }
  }
  return actions;
}
