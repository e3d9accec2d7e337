/**
 * Runner use cases, each written once: the operator's routes (src/api/runners.ts), the runner
 * protocol (src/api/runner-protocol.ts) and the scheduler call these. Register -> control
 * channel -> heartbeats -> claim (long poll) -> start -> logs -> result; every job call is fenced
 * by the claim (runner id + attempt).
 */
import type { AppContext } from './context.js';
import type { Bus } from './bus.js';
import type { ControlSend } from './control-hub.js';
import { terminateRunnerTx, type Termination } from '../queue/terminate-runner.js';
import { activeJobIdsOfRunner, recoverJobs } from '../queue/recover.js';
import { appendLogs, markRunning, type JobResult } from '../queue/report.js';
import { claimForRunner } from '../queue/claim.js';
import type { Fence, Job, LogLine } from '../queue/job.js';
import type * as wire from '../protocol/runner.js';
import { findRunner, findRunnerState, getRunner, refreshBusyIdle, setHold, type Runner, type RunnerState } from '../store/queries/runners.js';
import { moveRunner, registerRunner, resumeRunner, type TransitionOutcome } from '../store/queries/runner-transitions.js';
import { getPool, type Pool } from '../store/queries/pools.js';
import { createToken, revokeRunnerTokens, spendToken } from '../store/queries/tokens.js';
import { artifactInfo, type ArtifactInfo } from '../store/artifacts.js';
import { decryptAtRest, sealTo } from '../lib/sealed.js';
import { ConflictError, GoneError, NotFoundError, UnauthorizedError, UnprocessableError } from '../lib/errors.js';
import { leaseTiming } from '../config/lease.js';

/** A claim not confirmed by the runner's heartbeat after this long is considered lost. */
export const LOST_CLAIM_MS = 30_000;

const gone = (id: string) => new GoneError(`runner ${id} was terminated`);

// ---- ending and holding runners ------------------------------------------------------------

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
  ctx: Pick<AppContext, 'db' | 'bus' | 'claims'>,
  now: number,
  runnerId: string,
  reason: string,
  opts: { actor?: string; jobsReason?: string } = {},
): Promise<Termination> {
  const t = await ctx.db.transaction((tx) => terminateRunnerTx(tx, now, runnerId, reason, opts));
  ctx.claims.forget(runnerId);
  announceTermination(ctx.bus, runnerId, t);
  return t;
}

/**
 * Moves a runner to draining (it finishes its jobs, takes no more, then stops) and tells it.
 * `hold` keeps it draining when it comes back from offline (an operator's drain); `always` holds
 * and tells it even when its state did not move (already draining).
 */
export async function drainRunner(
  ctx: Pick<AppContext, 'db' | 'clock' | 'hub'>,
  id: string,
  reason: string,
  opts: { actor?: string; hold?: boolean; always?: boolean } = {},
): Promise<TransitionOutcome> {
  const r = await moveRunner(ctx.db, ctx.clock.now(), id, 'drain', reason, { actor: opts.actor });
  if (!r.moved && !opts.always) return r;
  if (opts.hold) await setHold(ctx.db, id, 'draining');
  ctx.hub.send(id, 'drain');
  return r;
}

class AbandonDrain extends Error {}

/**
 * The scheduler's stop of a runner without jobs: drained (and told) only if it holds none. If it
 * claimed a job since the decision, the move fails under the runner's row lock (which claims
 * also take) and nothing changes; false then.
 */
export async function drainIdleRunner(ctx: Pick<AppContext, 'db' | 'clock' | 'hub'>, id: string, reason: string): Promise<boolean> {
  const now = ctx.clock.now();
  const moved = await ctx.db
    .transaction(async (tx) => {
      const active = await activeJobIdsOfRunner(tx, id);
      const r = await moveRunner(tx, now, id, 'drainIdle', reason);
      if (r.moved && active.length > 0) throw new AbandonDrain();
      return r.moved;
    })
    .catch((err) => (err instanceof AbandonDrain ? false : Promise.reject(err)));
  if (moved) ctx.hub.send(id, 'drain');
  return moved;
}

/** The operator's drain. */
export async function drain(ctx: AppContext, id: string, actor: string): Promise<void> {
  await getRunner(ctx.db, id);
  const r = await drainRunner(ctx, id, 'drained by operator', { actor, hold: true });
  if (!r.moved) throw new ConflictError(r.refusal);
  ctx.bus.emit('runners-changed', 'fleet');
}

export async function disable(ctx: AppContext, id: string, actor: string): Promise<void> {
  await getRunner(ctx.db, id);
  const r = await moveRunner(ctx.db, ctx.clock.now(), id, 'disable', 'disabled by operator', { actor });
  if (!r.moved) throw new ConflictError(r.refusal);
  await setHold(ctx.db, id, 'disabled');
  ctx.hub.send(id, 'disable');
  ctx.bus.emit('runners-changed', 'fleet');
}

export async function enable(ctx: AppContext, id: string, actor: string): Promise<void> {
  await getRunner(ctx.db, id);
  const now = ctx.clock.now();
  const r = await ctx.db.transaction(async (tx) => {
    const moved = await moveRunner(tx, now, id, 'enable', 'enabled by operator', { actor });
    if (moved.moved) {
      await setHold(tx, id, null);
      await refreshBusyIdle(tx, now, id);
    }
    return moved;
  });
  if (!r.moved) throw new ConflictError(r.refusal);
  ctx.hub.send(id, 'enable');
  ctx.bus.emit('runners-changed', 'fleet');
}

/** The operator's terminate: running jobs finish first (drain), then the provider stops it. */
export async function requestTerminate(ctx: AppContext, id: string, actor: string): Promise<void> {
  const runner = await getRunner(ctx.db, id);
  if (runner.state === 'starting' || runner.state === 'offline') {
    // Nothing to drain: it never registered or is gone.
    await terminateRunner(ctx, ctx.clock.now(), id, 'terminated by operator', { actor, jobsReason: 'runner terminated' });
  } else if (runner.state !== 'terminated') {
    await drainRunner(ctx, id, 'terminate requested by operator', { actor, hold: true, always: true });
  }
  ctx.bus.emit('runners-changed', 'fleet');
}

/** The operator's delete: the runner stops at once, removes its state and working dirs; its jobs are requeued. */
export async function deleteRunner(ctx: AppContext, id: string, actor: string): Promise<void> {
  await getRunner(ctx.db, id);
  ctx.hub.send(id, 'delete');
  await terminateRunner(ctx, ctx.clock.now(), id, 'deleted by operator', { actor, jobsReason: 'runner deleted' });
}

// ---- the runner protocol --------------------------------------------------------------------

export function runnerConfig(ctx: AppContext, pool: Pool, runner: Runner): Omit<wire.RunnerConfig, 'distribution'> {
  const lease = leaseTiming(ctx.config);
  return {
    pool: pool.name,
    maxJobsPerRunner: runner.slots,
    ephemeral: runner.ephemeral || pool.config.ephemeral,
    heartbeatIntervalMs: ctx.config.runner.heartbeatInterval,
    pingIntervalMs: ctx.config.runner.pingInterval,
    idleTimeoutMs: pool.config.idleTimeout,
    jobTimeoutMs: pool.config.jobTimeout,
    setup: pool.config.setup,
    env: pool.config.env,
    /** This server takes `seq` on claims and `abandoned` on heartbeats (older ones refuse them). */
    claimSeq: true,
    // The runner's hold on its jobs: it stops them when no heartbeat was answered for leaseMs
    // (SIGTERM, SIGKILL after leaseKillGraceMs); this server requeues them only later.
    leaseMs: lease.leaseMs,
    leaseKillGraceMs: lease.killGraceMs,
    /** Every live control plane on this database: where the runner goes if this one stops answering. */
    servers: ctx.servers?.() ?? [],
  };
}

/** What a registration token allows: a pool, and for a launch token one runner id. */
export interface RegistrationGrant {
  tokenId: string;
  pool: string;
  runnerId: string | null;
}

/**
 * Registers a runner (or the same runner again after a restart: whatever it was running is
 * lost and requeued) and issues its credential, sealed to its key.
 */
export async function register(ctx: AppContext, grant: RegistrationGrant, body: wire.RegisterRequest): Promise<wire.RegisterResponse> {
  const id = body.id;
  const now = ctx.clock.now();
  const result = await ctx.db.transaction(async (tx) => {
    const pool = await getPool(tx, grant.pool);
    // A launch token is spent by the first registration, before the runner is read: a racing
    // second one waits on the token's row and then sees the key the first one bound.
    const fresh = !grant.runnerId || (await spendToken(tx, now, grant.tokenId));
    const existing = await findRunner(tx, id);
    if (existing?.state === 'terminated') throw new GoneError(`runner ${id} was terminated; start the agent with a fresh state dir`);
    if (existing && existing.pool !== pool.name) throw new ConflictError(`runner ${id} belongs to pool ${existing.pool}`);
    // No registration token, pool-wide or launch, re-keys a runner: the key is its identity.
    if (existing?.publicKey && existing.publicKey !== body.publicKey)
      throw new ConflictError(`runner ${id} is registered with another key; start the agent with a fresh state dir`, 'id');
    // Used again, a launch token only serves the same runner with the same key (its 201 was
    // lost, or the agent restarted).
    if (!fresh && existing?.publicKey !== body.publicKey) throw new UnauthorizedError('this launch token has already been used');
    const { runner, from } = await registerRunner(tx, now, {
      id,
      pool: pool.name,
      name: body.name,
      version: body.version,
      publicKey: body.publicKey,
      labels: body.labels,
      slots: pool.config.maxJobsPerRunner,
      configHash: pool.configHash,
      ephemeral: pool.config.ephemeral,
    });
    // A runner that re-registers after a restart has lost whatever it was running.
    const lost = await activeJobIdsOfRunner(tx, id);
    if (lost.length) await recoverJobs(tx, now, lost, 'runner restarted', { runnerId: id });
    await revokeRunnerTokens(tx, now, id);
    const { secret } = await createToken(tx, now, { kind: 'runner', pool: pool.name, runnerId: id, description: `credential of ${body.name}` });
    const distribution: ArtifactInfo | null = pool.config.distribution ? await artifactInfo(tx, pool.config.distribution) : null;
    // never a runner without its pool's distribution: its jobs would run without their files
    if (pool.config.distribution && !distribution) throw new UnprocessableError(`distribution ${pool.config.distribution} of pool ${pool.name} is not in the artifact store`, 'distribution');
    return { runner, from, pool, secret, distribution, lost, firstKey: !existing?.publicKey };
  });
  ctx.claims.forget(id); // a restarted agent numbers its claims anew
  if (result.from === 'starting') ctx.metrics.coldStart.observe({ pool: result.pool.name }, (now - result.runner.createdAt.getTime()) / 1000);
  if (result.lost.length) ctx.bus.emit('work-queued', result.pool.name, result.lost.length);
  ctx.bus.emit('runners-changed', 'fleet');
  ctx.log.info({ runnerId: id, pool: result.pool.name, name: body.name }, 'runner registered');
  // Only the key's holder can read the credential of a runner that already had this key: a
  // token and a public key alone must not be enough to act as a registered runner.
  return {
    runner: result.runner,
    ...(result.firstKey ? { credential: result.secret } : {}),
    sealedCredential: sealTo(body.publicKey, { credential: result.secret }),
    config: { ...runnerConfig(ctx, result.pool, result.runner), distribution: result.distribution },
  };
}

/** The runner a control channel is opened for; 410 for a terminated one. */
export async function controlRunner(ctx: AppContext, id: string): Promise<Runner> {
  const runner = await getRunner(ctx.db, id);
  if (runner.state === 'terminated') throw gone(id);
  return runner;
}

/**
 * Connects a runner's control channel on this server: `send` gets the hello and its hold at
 * once, a ping every ping interval, and whatever the hub sends it. Returns the close function
 * (idempotent).
 */
export function connectControl(ctx: AppContext, runner: Runner, send: ControlSend): () => void {
  const disconnect = ctx.hub.connect(runner.id, runner.pool, send);
  ctx.metrics.controlChannels.set(ctx.hub.connectionCount());
  let open = true;
  const ping = setInterval(() => send('ping', { at: ctx.clock.now() }), ctx.config.runner.pingInterval);
  send('hello', { state: runner.state });
  if (runner.state === 'disabled') send('disable', {});
  if (runner.state === 'draining') send('drain', {});
  return () => {
    if (!open) return;
    open = false;
    clearInterval(ping);
    disconnect();
    ctx.metrics.controlChannels.set(ctx.hub.connectionCount());
  };
}

/**
 * A runner's heartbeat: recorded (in the heartbeat buffer), answered from a fresh read of what
 * the server believes it holds: the jobs it must stop (lost), cancel, and the live servers.
 */
export async function heartbeat(ctx: AppContext, id: string, pool: string, body: wire.HeartbeatRequest): Promise<wire.HeartbeatResponse> {
  const now = ctx.clock.now();
  // Before the read: a claim recorded after this point sees it abandoned and undoes itself.
  const abandoned = ctx.claims.abandon(id, body.abandoned ?? [], now);
  const runner = await ctx.heartbeats.view(id);
  if (!runner || runner.state === 'terminated') throw gone(id);
  ctx.heartbeats.record(id, now, body.version);
  ctx.metrics.heartbeats.inc();
  const rows = runner.jobs;
  const serverHas = new Map(rows.map((r) => [r.id, r]));
  const reported = new Set(body.jobs.map((j) => j.id));
  // Jobs the runner runs that it no longer holds: it must stop them.
  const lost = body.jobs.filter((j) => serverHas.get(j.id)?.attempt !== j.attempt).map((j) => j.id);
  const cancel = rows.filter((r) => r.cancel_requested && reported.has(r.id)).map((r) => r.id);
  // Claims the runner never picked up (its claim response was lost) go back to the queue: at
  // once when it says it never saw the answer (see ClaimLedger), else after the timeout.
  const unseen = new Set(abandoned.map((j) => `${j.id}:${j.attempt}`));
  const unclaimed = rows
    .filter((r) => !reported.has(r.id) && (unseen.has(`${r.id}:${r.attempt}`) || now - Date.parse(r.claimed_at) > LOST_CLAIM_MS))
    .map((r) => r.id);
  if (unclaimed.length) {
    await ctx.db.transaction((tx) => recoverJobs(tx, now, unclaimed, 'claim lost: runner does not report the job', { runnerId: id, refundUnstarted: true }));
    ctx.bus.emit('work-queued', pool, unclaimed.length);
  }
  let state: RunnerState = runner.state;
  if (state === 'offline') {
    await ctx.db.transaction((tx) => resumeRunner(tx, now, id));
    ctx.bus.emit('runners-changed', 'fleet');
    state = (await getRunner(ctx.db, id)).state;
  }
  return { state, cancel, lost, servers: ctx.servers?.() ?? [] };
}

/**
 * A claim (long poll): up to `max` jobs of the runner's pool, waiting up to `waitMs` for work.
 * Parked on the control hub, woken by work arriving on this server; the periodic re-check covers
 * jobs enqueued through another server.
 */
export async function claim(ctx: AppContext, id: string, pool: string, req: wire.ClaimRequest, signal: AbortSignal): Promise<wire.ClaimedJob[]> {
  const deadline = Date.now() + req.waitMs;
  for (;;) {
    // A runner that hung up must not be handed jobs it will never see.
    if (signal.aborted || (req.seq !== undefined && ctx.claims.isAbandoned(id, req.seq))) return [];
    const gen = ctx.hub.generation(pool);
    const jobs = await tryClaim(ctx, id, req.max);
    if (jobs.length > 0 && req.seq !== undefined && ctx.claims.record(id, req.seq, jobs.map((j) => ({ id: j.id, attempt: j.attempt })), ctx.clock.now())) {
      // The runner gave this claim up while it was being made: the jobs go back at once.
      const now = ctx.clock.now();
      await ctx.db.transaction((tx) => recoverJobs(tx, now, jobs.map((j) => j.id), 'claim abandoned by the runner', { runnerId: id, refundUnstarted: true }));
      ctx.bus.emit('work-queued', pool, jobs.length);
      return [];
    }
    if (jobs.length > 0 || signal.aborted) return jobs;
    const left = deadline - Date.now();
    if (left <= 0) return [];
    await ctx.hub.park(pool, gen, signal, Math.min(left, 2000));
  }
}

/** One claim attempt: respects the runner's state, free slots, config hash and ephemerality. */
async function tryClaim(ctx: AppContext, runnerId: string, max: number): Promise<wire.ClaimedJob[]> {
  const now = ctx.clock.now();
  const started = performance.now();
  const { runnerState, publicKey, jobs } = await claimForRunner(ctx.db, now, runnerId, max);
  // The claim reads the runner's row anyway: a runner terminated through any server is told at once.
  if (runnerState === 'terminated') throw gone(runnerId);
  if (jobs.length === 0) return [];
  ctx.metrics.claimLatency.observe((performance.now() - started) / 1000);
  for (const j of jobs) {
    ctx.metrics.claims.inc({ pool: j.pool });
    ctx.metrics.waitTime.observe({ pool: j.pool }, Math.max(0, now - j.queuedAt.getTime()) / 1000);
    ctx.bus.emit('job-changed', j.id);
  }
  ctx.bus.emit('runners-changed', 'load');
  // Secrets leave the server only sealed to the claiming runner's key.
  return jobs.map((j) => ({
    ...j,
    secretsEnc: null,
    secrets: j.secretsEnc && publicKey ? sealTo(publicKey, decryptAtRest(ctx.secretKey, j.secretsEnc)) : null,
  }));
}

/**
 * An agent stopped by Ctrl-C keeps its identity: offline now (not after the heartbeat timeout,
 * so no phantom idle capacity), registered again with the same id on its next start.
 */
export async function goOffline(ctx: AppContext, id: string, pool: string): Promise<void> {
  const now = ctx.clock.now();
  const lost = await ctx.db.transaction(async (tx) => {
    const went = await moveRunner(tx, now, id, 'offline', 'agent stopped; it keeps its identity', { actor: id });
    return went.moved ? recoverJobs(tx, now, await activeJobIdsOfRunner(tx, id), 'runner stopped', { runnerId: id }) : [];
  });
  ctx.bus.emit('runners-changed', 'fleet');
  if (lost.length) ctx.bus.emit('work-queued', pool, lost.length);
}

/** The agent exited for good (ephemeral, drained, idle timeout). */
export async function deregister(ctx: AppContext, id: string): Promise<void> {
  await terminateRunner(ctx, ctx.clock.now(), id, 'agent exited', { actor: id, jobsReason: 'runner exited' });
}

/**
 * A job call by the claim's fence. When the fence refuses, a runner that was terminated (through
 * any server: its credential may still be in this server's auth cache) is told it is gone, 410,
 * rather than 409; the extra read happens only on that refusal.
 */
async function fenced<T>(ctx: AppContext, runnerId: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if ((err instanceof ConflictError || err instanceof NotFoundError) && (await findRunnerState(ctx.db, runnerId)) === 'terminated') throw gone(runnerId);
    throw err;
  }
}

export async function startJob(ctx: AppContext, fence: Fence): Promise<Job> {
  const job = await fenced(ctx, fence.runnerId, () => markRunning(ctx.db, ctx.clock.now(), fence));
  ctx.bus.emit('job-changed', fence.jobId);
  return job;
}

export async function appendJobLogs(ctx: AppContext, fence: Fence, seq: number, lines: LogLine[]): Promise<{ cancelRequested: boolean }> {
  const r = await fenced(ctx, fence.runnerId, () => appendLogs(ctx.db, ctx.clock.now(), fence, seq, lines));
  ctx.bus.emit('log-appended', fence.jobId);
  return r;
}

/** A job's result, through the completer (results arriving together share one transaction). */
export async function reportResult(ctx: AppContext, fence: Fence, result: JobResult): Promise<Job> {
  const job = await fenced(ctx, fence.runnerId, () => ctx.completer.complete(fence, result));
  const now = ctx.clock.now();
  if (job.state === 'queued') ctx.bus.emit('work-queued', job.pool, 1);
  else {
    ctx.metrics.jobOutcomes.inc({ pool: job.pool, state: job.state });
    if (job.startedAt) ctx.metrics.runTime.observe({ pool: job.pool }, (now - job.startedAt.getTime()) / 1000);
  }
  ctx.bus.emit('job-changed', fence.jobId);
  ctx.bus.emit('runners-changed', 'load');
  return job;
}
