/**
 * A runner's hold on its jobs is a lease, renewed by each heartbeat the server answers. The agent
 * stops its jobs when the lease runs out; the server requeues a silent runner's jobs only after
 * `scheduler.offlineAfter` (and a stuck job after `stuckAfter`), both at least the lease plus a
 * margin, which covers stopping the jobs (SIGTERM, then SIGKILL after `killGraceMs`). So a job is
 * never handed out again while an earlier attempt may still run.
 */

/** The smallest gap allowed between the lease and the server's requeue windows. */
export const MIN_LEASE_MARGIN_MS = 500;
/** The longest SIGTERM-to-SIGKILL grace for jobs whose lease ran out. */
const MAX_KILL_GRACE_MS = 5000;

export interface LeaseInputs {
  runner: { heartbeatInterval: number; lease?: number | undefined };
  scheduler: { offlineAfter: number; stuckAfter: number };
}

export interface LeaseTiming {
  leaseMs: number;
  /** The server's shortest requeue window: min(offlineAfter, stuckAfter). */
  windowMs: number;
  marginMs: number;
  killGraceMs: number;
  /** Whether `runner.lease` was set (rather than derived). */
  explicit: boolean;
}

/** The lease: `runner.lease`, or 3/4 of the server's shortest requeue window. */
export function leaseTiming(c: LeaseInputs): LeaseTiming {
  const windowMs = Math.min(c.scheduler.offlineAfter, c.scheduler.stuckAfter);
  const leaseMs = c.runner.lease ?? Math.floor((windowMs * 3) / 4);
  const marginMs = windowMs - leaseMs;
  const killGraceMs = Math.max(0, Math.min(MAX_KILL_GRACE_MS, Math.floor(marginMs / 2)));
  return { leaseMs, windowMs, marginMs, killGraceMs, explicit: c.runner.lease !== undefined };
}

/** What is wrong with the lease settings, each with the config path to name. */
export function leaseProblems(c: LeaseInputs): { path: string[]; message: string }[] {
  const t = leaseTiming(c);
  const lease = t.explicit ? `runner.lease (${t.leaseMs}ms)` : `the runner lease (${t.leaseMs}ms: 3/4 of min(scheduler.offlineAfter, scheduler.stuckAfter) unless runner.lease is set)`;
  const problems: { path: string[]; message: string }[] = [];
  if (t.leaseMs <= c.runner.heartbeatInterval)
    problems.push({ path: t.explicit ? ['runner', 'lease'] : ['runner', 'heartbeatInterval'], message: `${lease} must be longer than runner.heartbeatInterval (${c.runner.heartbeatInterval}ms): heartbeats renew it` });
  if (t.marginMs < MIN_LEASE_MARGIN_MS) {
    const which = c.scheduler.stuckAfter < c.scheduler.offlineAfter ? 'stuckAfter' : 'offlineAfter';
    problems.push({ path: t.explicit ? ['runner', 'lease'] : ['scheduler', which], message: `scheduler.${which} (${t.windowMs}ms) must be at least ${lease} + ${MIN_LEASE_MARGIN_MS}ms, so a silent runner's jobs are stopped before they are requeued` });
  }
  return problems;
}
