import type { AppContext } from '../app/context.js';
import { countJobsByPool, expireTimedOutJobs, findStuckJobs, recoverJobs, activeJobIdsOfRunner } from '../queue/recover.js';
import { findSilentRunners } from '../store/queries/runners.js';
import { moveRunner } from '../store/queries/runner-transitions.js';
import { StoreUnavailableError } from '../store/store-errors.js';

/** How long past its timeout a job may run before the server records it timed out itself. */
const TIMEOUT_GRACE_MS = 30_000;

export interface RecoveryReport {
  offline: string[];
  requeued: number[];
  failed: number[];
  timedOut: number[];
}

/**
 * Recovery, run on every tick: runners whose heartbeats stopped go offline and their jobs take
 * the queue's recovery path; stuck jobs likewise; jobs past their timeout are recorded timed out.
 * Pure store work with the injected clock, so tests drive it by advancing time.
 */
export async function recover(ctx: AppContext, now: number): Promise<RecoveryReport> {
  const { scheduler } = ctx.config;
  await ctx.heartbeats.flush();
  const report: RecoveryReport = { offline: [], requeued: [], failed: [], timedOut: [] };
  const note = (moved: { id: number; to: string }[]) => {
    for (const m of moved) (m.to === 'queued' ? report.requeued : report.failed).push(m.id);
  };
  for (const r of await findSilentRunners(ctx.db, now - scheduler.offlineAfter)) {
    const moved = await ctx.db.transaction(async (tx) => {
      const went = await moveRunner(tx, now, r.id, 'offline', `no heartbeat for ${Math.round(scheduler.offlineAfter / 1000)}s`);
      if (!went.moved) return [];
      return recoverJobs(tx, now, await activeJobIdsOfRunner(tx, r.id), 'runner went offline', { runnerId: r.id });
    });
    report.offline.push(r.id);
    note(moved);
  }
  const stuck = await findStuckJobs(ctx.db, now - scheduler.stuckAfter);
  if (stuck.length) note(await ctx.db.transaction((tx) => recoverJobs(tx, now, stuck, `stuck: no activity for ${Math.round(scheduler.stuckAfter / 1000)}s`)));
  for (const j of await expireTimedOutJobs(ctx.db, now, TIMEOUT_GRACE_MS)) {
    report.timedOut.push(j.id);
    if (j.runnerId) ctx.hub.send(j.runnerId, 'cancel', { jobId: j.id });
  }
  for (const p of await countJobsByPool(ctx.db, report.requeued)) ctx.bus.emit('work-queued', p.pool, p.n);
  for (const id of [...report.requeued, ...report.failed, ...report.timedOut]) ctx.bus.emit('job-changed', id);
  if (report.offline.length || report.requeued.length || report.failed.length || report.timedOut.length) {
    ctx.log.info(report, 'recovery pass');
    ctx.bus.emit('runners-changed', 'fleet');
  }
  return report;
}

/**
 * The periodic loop (default every 10 s, the fallback to event-driven wakes): on the leader only,
 * recovery, then reconcile with providers, then a scheduling pass.
 */
export class Maintenance {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  private closed = false;
  readonly steps: { name: string; run: (now: number) => Promise<unknown> }[] = [];

  constructor(private ctx: AppContext, private isLeader: () => Promise<boolean> = async () => true) {
    this.steps.push({ name: 'recover', run: (now) => recover(ctx, now) });
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.ctx.config.scheduler.tick);
    this.timer.unref();
  }

  /** Runs one pass (serialised with any pass in flight). */
  tick(): Promise<unknown> {
    this.running = this.running.then(async () => {
      if (this.closed || !(await this.isLeader())) return;
      for (const step of this.steps) {
        try {
          await step.run(this.ctx.clock.now());
        } catch (err) {
          if (err instanceof StoreUnavailableError) this.ctx.log.warn({ step: step.name, reason: err.message }, 'maintenance step skipped: store unavailable');
          else this.ctx.log.error({ err, step: step.name }, 'maintenance step failed');
        }
      }
    });
    return this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.running;
  }
}
