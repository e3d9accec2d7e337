/*
 * Numbers for the dashboard's overview and pools pages, computed in SQL so the page never
 * downloads job lists to count them:
 *
 *   GET /api/v1/stats               queue depth and waits per pool, runners by state, jobs
 *                                   finished per minute over the last hour
 *   GET /api/v1/stats/scaling       recent scale events (runners started, drained, stopped,
 *                                   lost; pool config changes; scheduler notes), newest first
 */
import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { requireAdmin } from './auth.js';
import { query, type Env } from './http.js';
import { slug } from '../config/schema.js';
import { listPools } from '../store/queries/pools.js';
import { FINAL_STATES as FINAL, overviewCounts, scaleEvents } from '../store/stats.js';

const MINUTE = 60_000;
const WINDOW_MINUTES = 60;

export interface PoolStats {
  name: string;
  provider: string;
  maxRunners: number;
  minIdle: number;
  maxJobsPerRunner: number;
  queued: number;
  claimed: number;
  running: number;
  /** when the oldest job still queued was queued, and how long it has waited */
  oldestQueuedAt: Date | null;
  oldestWaitMs: number | null;
  /** mean time from queued to claimed of the jobs claimed in the last hour */
  avgWaitMs: number | null;
  runners: Record<string, number>;
  /** slots of idle and busy runners not taken by a claimed or running job */
  freeSlots: number;
  /** why its queued jobs wait: no runner could be started (see the pool's waitingReason) */
  waitingReason: string | null;
}

export function statsRouter(ctx: AppContext) {
  const app = new Hono<Env>();

  app.get('/', async (c) => {
    requireAdmin(c.var.principal);
    const now = ctx.clock.now();
    const since = new Date(now - WINDOW_MINUTES * MINUTE);
    const [pools, { jobRows, runnerRows, waitRows, finishedRows }] = await Promise.all([listPools(ctx.db), overviewCounts(ctx.db, since, new Date(now))]);

    const byPool = new Map<string, PoolStats>();
    const poolStats = (name: string): PoolStats => {
      let p = byPool.get(name);
      if (!p) {
        const cfg = pools.find((x) => x.name === name)?.config;
        p = {
          name,
          provider: cfg?.provider ?? 'unknown',
          maxRunners: cfg?.maxRunners ?? 0,
          minIdle: cfg?.minIdle ?? 0,
          maxJobsPerRunner: cfg?.maxJobsPerRunner ?? 1,
          queued: 0,
          claimed: 0,
          running: 0,
          oldestQueuedAt: null,
          oldestWaitMs: null,
          avgWaitMs: null,
          runners: {},
          freeSlots: 0,
          waitingReason: pools.find((x) => x.name === name)?.waitingReason ?? null,
        };
        byPool.set(name, p);
      }
      return p;
    };
    for (const pool of pools) poolStats(pool.name);
    for (const r of jobRows) {
      const p = poolStats(r.pool);
      if (r.state === 'queued') {
        p.queued = r.n;
        p.oldestQueuedAt = r.oldest;
        p.oldestWaitMs = r.oldest ? Math.max(0, now - new Date(r.oldest).getTime()) : null;
      } else if (r.state === 'claimed') p.claimed = r.n;
      else if (r.state === 'running') p.running = r.n;
    }
    const runnersByState: Record<string, number> = {};
    for (const r of runnerRows) {
      const p = poolStats(r.pool);
      p.runners[r.state] = r.n;
      if (r.state === 'idle' || r.state === 'busy') p.freeSlots += r.slots;
      runnersByState[r.state] = (runnersByState[r.state] ?? 0) + r.n;
    }
    for (const p of byPool.values()) p.freeSlots = Math.max(0, p.freeSlots - p.claimed - p.running);
    for (const r of waitRows) if (r.ms !== null) poolStats(r.pool).avgWaitMs = Math.round(r.ms);

    const buckets = Array.from({ length: WINDOW_MINUTES }, (_, i) => ({
      at: new Date(since.getTime() + i * MINUTE),
      succeeded: 0,
      failed: 0,
      cancelled: 0,
      timed_out: 0,
    }));
    let lastHour = 0;
    for (const r of finishedRows) {
      const b = buckets[Math.min(WINDOW_MINUTES - 1, Math.max(0, r.bucket))]!;
      if (FINAL.includes(r.state)) b[r.state] += r.n;
      lastHour += r.n;
    }
    const total = (b: (typeof buckets)[number]) => b.succeeded + b.failed + b.cancelled + b.timed_out;
    const all = [...byPool.values()];
    return c.json({
      at: new Date(now),
      jobs: {
        queued: all.reduce((s, p) => s + p.queued, 0),
        claimed: all.reduce((s, p) => s + p.claimed, 0),
        running: all.reduce((s, p) => s + p.running, 0),
      },
      runners: runnersByState,
      pools: all,
      throughput: {
        minutes: WINDOW_MINUTES,
        lastHour,
        lastMinute: total(buckets[WINDOW_MINUTES - 1]!),
        perMinute: Math.round((lastHour / WINDOW_MINUTES) * 10) / 10,
        buckets,
      },
    });
  });

  // Scale events: what the scheduler and operators did to a pool's fleet. Busy/idle flips are
  // left out; they are the runners working, not the fleet changing size.
  app.get('/scaling', async (c) => {
    requireAdmin(c.var.principal);
    const q = query(c, z.object({ pool: slug.optional(), limit: z.coerce.number().int().min(1).max(500).default(50) }));
    const rows = await scaleEvents(ctx.db, q.pool, q.limit);
    return c.json({
      events: rows.map((r) => ({
        id: r.id,
        at: r.at,
        kind: r.kind,
        subject: r.subject,
        pool: r.pool,
        runnerName: r.runner_name,
        fromState: r.from_state,
        toState: r.to_state,
        reason: r.reason,
        actor: r.actor,
      })),
    });
  });

  return app;
}
