/*
 * The scaling decision: a pure function from what the store and providers report to a plan.
 * No I/O and no clock reads here — `now` is an argument — so it is tested with tables of cases.
 */
import type { PoolConfig } from '../config/schema.js';
import type { SchedulingRunner } from '../store/queries/scheduling.js';
import { scheduledMinIdle } from '../config/min-idle-schedule.js';

/** A runner as decide() sees it: what the gather reads of it, less what only the scheduler uses. */
export type RunnerView = Omit<SchedulingRunner, 'pool' | 'registeredAt'>;

export interface PoolView {
  config: PoolConfig;
  configHash: string;
  /** every queued job of the pool, whatever its image */
  queued: number;
  /** queued jobs that asked for a dynamic image, by base; the rest want the pool's own image */
  queuedByImage?: Record<string, number>;
  runners: RunnerView[];
  /** consecutive failed starts and when the last one happened, for backoff */
  startFailures: { count: number; lastAt: number };
}

export type Action =
  | { kind: 'start'; pool: string; count: number; reason: string; image?: string }
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

  const live: RunnerView[] = [];
  const liveImages = new Set<string>();
  for (const r of p.runners)
    if (r.state !== 'terminated') {
      live.push(r);
      if (r.image !== null) liveImages.add(r.image);
    }
  // The cap counts every live runner, even one being drained: it is a hard limit on compute.
  let headroom = Math.max(0, c.maxRunners - live.length);
  const backoff = startBackoff(p.startFailures.count);
  const backingOff = backoff > 0 && now - p.startFailures.lastAt < backoff;

  // Each image is a lane of its own: runners of one image never take another's jobs. The pool's
  // own image comes first and alone keeps minIdle warm; dynamic ones follow, most queued first.
  const dynamic = Object.entries(p.queuedByImage ?? {}).filter(([, n]) => n > 0);
  const dynamicQueued = dynamic.reduce((n, [, q]) => n + q, 0);
  const warm = Math.max(scheduledMinIdle(c.minIdle, c.minIdleSchedule, now), c.ec2?.warmPool.running ?? 0);
  const lanes: { image: string | null; queued: number; minIdle: number }[] = [{ image: null, queued: Math.max(0, p.queued - dynamicQueued), minIdle: warm }];
  const laneImages = new Set([...dynamic.map(([i]) => i), ...liveImages]);
  for (const image of [...laneImages].sort((a, b) => (p.queuedByImage?.[b] ?? 0) - (p.queuedByImage?.[a] ?? 0) || a.localeCompare(b)))
    lanes.push({ image, queued: p.queuedByImage?.[image] ?? 0, minIdle: 0 });

  for (const lane of lanes) {
    // the pool image's lane is every live runner when no runner carries a dynamic image
    const mine = liveImages.size === 0 && lane.image === null ? live : live.filter((r) => r.image === lane.image);
    const plan = decideLane(c, lane, mine, gone, now, headroom, backingOff);
    headroom -= plan.start;
    if (plan.start > 0) actions.push({ kind: 'start', pool, count: plan.start, reason: plan.reason, ...(lane.image !== null ? { image: lane.image } : {}) });
    for (const r of plan.idleOut) stop('terminate', r, `idle for ${Math.round((now - r.idleSince!) / 1000)}s (idleTimeout ${Math.round(c.idleTimeout / 1000)}s)`);
  }
  return actions;
}

/** Runners to start for one image's queue, and idle ones of it to stop. */
function decideLane(
  c: PoolConfig,
  lane: { image: string | null; queued: number; minIdle: number },
  live: RunnerView[],
  gone: Set<string>,
  now: number,
  headroom: number,
  backingOff: boolean,
): { start: number; reason: string; idleOut: RunnerView[] } {
  // One pass over the runners (this runs on every scheduler pass, for fleets of thousands).
  // Usable: registered (idle/busy) or on their way (starting), not being stopped.
  const slotsPer = c.ephemeral ? 1 : c.maxJobsPerRunner;
  let free = 0;
  let idleCount = 0;
  let busyFree = 0;
  let starting = 0;
  let expired = 0;
  const idleRegistered: RunnerView[] = [];
  for (const r of live) {
    if (gone.has(r.id) || (r.state !== 'idle' && r.state !== 'busy' && r.state !== 'starting')) continue;
    const slots = r.ephemeral || c.ephemeral ? (r.jobsStarted === 0 && r.activeJobs === 0 ? 1 : 0) : Math.max(0, r.slots - r.activeJobs);
    free += slots;
    if (r.activeJobs > 0) busyFree += slots;
    else if (slots > 0) idleCount++;
    if (r.state === 'starting') starting++;
    else if (r.state === 'idle' && r.activeJobs === 0 && r.idleSince !== null && managed(r)) {
      idleRegistered.push(r);
      if (now - r.idleSince >= c.idleTimeout) expired++;
    }
  }
  const shortfall = Math.max(0, lane.queued - free);
  const forDemand = Math.ceil(shortfall / slotsPer);

  // Warm runners: idle ones not needed for the queue. Queued work lands on busy runners' free
  // slots first, then on idle runners.
  const idleTaken = Math.min(idleCount, Math.ceil(Math.max(0, lane.queued - busyFree) / slotsPer));
  const idleLeft = idleCount - idleTaken;
  const forWarm = Math.max(0, lane.minIdle - idleLeft);

  let start = Math.min(forDemand + forWarm, headroom);
  if (backingOff) start = 0;
  const what = lane.image === null ? '' : ` for image ${lane.image}`;
  const reason = [forDemand ? `${lane.queued} queued${what}, ${free} free slots` : '', forWarm ? `keep ${lane.minIdle} warm` : ''].filter(Boolean).join('; ');

  // Scale down: idle past idleTimeout, above minIdle, and only when nothing of this image waits.
  const idleOut: RunnerView[] = [];
  if (lane.queued === 0 && expired > 0) {
    idleRegistered.sort((a, b) => b.idleSince! - a.idleSince!); // most recently idle first: those are kept warm
    const keep = Math.max(0, lane.minIdle - starting);
    for (const r of idleRegistered.slice(keep)) if (now - r.idleSince! >= c.idleTimeout) idleOut.push(r);
  }
  return { start, reason, idleOut };
}
