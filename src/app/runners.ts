/**
 * Runner use cases, each written once: the operator's routes, the runner protocol and the
 * scheduler call these.
 */
import type { AppContext } from './context.js';
import type { Bus } from './bus.js';
import { terminateRunnerTx, type Termination } from '../queue/terminate-runner.js';

/** Tells this server's listeners (auth cache, scheduler, followers) of a committed termination. */
export function announceTermination(bus: Bus, runnerId: string, t: Termination): void {
  bus.emit('runner-terminated', runnerId);
  bus.emit('runners-changed', 'fleet');
  for (const m of t.moved) bus.emit('job-changed', m.id);
  const requeued = t.moved.filter((m) => m.to === 'queued').length;
  if (requeued && t.pool) bus.emit('work-queued', t.pool, requeued);
}

/**
 * The one way a runner ends (see src/queue/terminate-runner.ts): state, jobs and tokens in one
 * transaction, then the announcement.
 */
export async function terminateRunner(
  ctx: Pick<AppContext, 'db' | 'bus'>,
  now: number,
  runnerId: string,
  reason: string,
  opts: { actor?: string; jobsReason?: string } = {},
): Promise<Termination> {
  const t = await ctx.db.transaction((tx) => terminateRunnerTx(tx, now, runnerId, reason, opts));
  announceTermination(ctx.bus, runnerId, t);
  return t;
}
