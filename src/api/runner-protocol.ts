/*
 * The runner protocol: register -> control channel (SSE) -> heartbeats -> claim (long poll)
 * -> start -> logs -> result. Every job call is fenced by the claim (runner id + attempt).
 */
import { Hono } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import type { Authenticator } from './auth.js';
import { requireRunner } from './auth.js';
import { parseId, parseUuid, readJson, type Env } from './http.js';
import { activeJobIdsOfRunner, appendLogs, claimForRunner, markRunning, recoverJobs, type ClaimedJob } from '../queue/jobs.js';
import { resumeRunner, findRunner, findRunnerState, getRunner, registerRunner, transitionRunner, type Runner, type RunnerState } from '../store/queries/runners.js';
import { getPool, type Pool } from '../store/queries/pools.js';
import { JobCompleter } from '../app/completer.js';
import { createToken, findTokenBySecret, revokeRunnerTokens, spendToken } from '../store/queries/tokens.js';
import { decryptAtRest, isValidPublicKey, sealTo } from '../lib/sealed.js';
import { ConflictError, ForbiddenError, GoneError, NotFoundError, UnauthorizedError, UnprocessableError } from '../lib/errors.js';
import { artifactInfo } from '../store/artifacts.js';
import { ClaimLedger } from '../app/claim-ledger.js';
import { terminateRunner } from '../app/runners.js';
import { sseFrame, type ControlSend } from '../app/control-hub.js';
import { INT4_MAX, INT8_MAX, MAX_EPOCH_MS, boundedInt, jsonValue, labels, safeString } from '../lib/validation.js';
import { leaseTiming } from '../config/lease.js';

export { GoneError };

const registerSchema = z.strictObject({
  id: z.uuid(),
  name: safeString({ min: 1, max: 200 }),
  version: safeString({ min: 1, max: 100 }),
  publicKey: safeString({ min: 1, max: 1000 }).refine(isValidPublicKey, 'must be a base64 DER (SPKI) X25519 public key'),
  labels: labels.default([]),
});

const heartbeatSchema = z.strictObject({
  version: safeString({ min: 1, max: 100 }),
  jobs: z.array(z.strictObject({ id: boundedInt(1, INT8_MAX), attempt: boundedInt(1) })).max(1000).default([]),
  /** Claim requests (their `seq`) the runner gave up on before an answer: see ClaimLedger. */
  abandoned: z.array(boundedInt(0)).max(1000).default([]),
});

const claimSchema = z.strictObject({
  max: z.number().int().min(1).max(256).default(1),
  waitMs: z.number().int().min(0).max(60_000).default(20_000),
  /** The runner's number for this claim request, so it can report it abandoned. */
  seq: boundedInt(0).optional(),
});

const fenceSchema = { attempt: boundedInt(1) };
const logSchema = z.strictObject({
  ...fenceSchema,
  seq: z.number().int().positive().max(1_000_000_000),
  lines: z
    .array(z.strictObject({ t: boundedInt(0, MAX_EPOCH_MS), s: z.enum(['o', 'e', 's']), m: safeString({ max: 65_536 }) }))
    .max(10_000),
});
const resultSchema = z.strictObject({
  ...fenceSchema,
  exitCode: boundedInt(-INT4_MAX).nullable(),
  output: jsonValue().optional(),
  error: safeString({ max: 10_000 }).nullable().optional(),
  outcome: z.enum(['cancelled', 'timed_out']).optional(),
  durationMs: boundedInt(0, INT8_MAX).optional(),
});

/** Control events a runner has not read, beyond which its channel is closed. */
const MAX_UNREAD_CONTROL_BYTES = 1 << 20;

/** A claim not confirmed by the runner's heartbeat after this long is considered lost. */
const LOST_CLAIM_MS = 30_000;

export function runnerConfig(ctx: AppContext, pool: Pool, runner: Runner) {
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

export function runnerProtocolRouter(ctx: AppContext, auth: Authenticator) {
  const app = new Hono<Env>();
  const claims = new ClaimLedger(LOST_CLAIM_MS);

  // Registration uses the registration token, so it is mounted before the general auth check.
  app.post('/register', async (c) => {
    const m = /^Bearer\s+(\S+)$/i.exec(c.req.header('authorization') ?? '');
    if (!m) throw new UnauthorizedError('missing registration token: send Authorization: Bearer <token>');
    const principal = await auth.resolve(m[1]!);
    if (!principal) {
      const why = await auth.describe(m[1]!);
      if (why === 'revoked') throw new ForbiddenError('registration token has been revoked; create a new one with `runyard tokens create --pool <pool>`', 'token');
      throw new UnauthorizedError(why === 'expired' ? 'registration token has expired' : 'invalid registration token');
    }
    if (principal.kind !== 'registration') throw new ForbiddenError(`registration needs a registration token; a ${principal.kind} token was given`);
    const body = await readJson(c, registerSchema);
    const id = body.id.toLowerCase();
    if (principal.runnerId && principal.runnerId !== id) throw new ForbiddenError('this registration token belongs to another runner', 'id');
    const now = ctx.clock.now();
    const result = await ctx.db.transaction(async (tx) => {
      const pool = await getPool(tx, principal.pool);
      // A launch token is spent by the first registration, before the runner is read: a racing
      // second one waits on the token's row and then sees the key the first one bound.
      const fresh = !principal.runnerId || (await spendToken(tx, now, principal.tokenId));
      const existing = await findRunner(tx, id);
      if (existing?.state === 'terminated') throw new GoneError(`runner ${id} was terminated; start the agent with a fresh state dir`);
      if (existing && existing.pool !== pool.name) throw new ConflictError(`runner ${id} belongs to pool ${existing.pool}`);
      // No registration token, pool-wide or launch, re-keys a runner: the key is its identity.
      if (existing?.publicKey && existing.publicKey !== body.publicKey)
        throw new ConflictError(`runner ${id} is registered with another key; start the agent with a fresh state dir`, 'id');
      // Used again, a launch token only serves the same runner with the same key (its 201 was
      // lost, or the agent restarted).
      if (!fresh && existing?.publicKey !== body.publicKey)
        throw new UnauthorizedError('this launch token has already been used');
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
      const distribution = pool.config.distribution ? await artifactInfo(tx, pool.config.distribution) : null;
      // never a runner without its pool's distribution: its jobs would run without their files
      if (pool.config.distribution && !distribution) throw new UnprocessableError(`distribution ${pool.config.distribution} of pool ${pool.name} is not in the artifact store`, 'distribution');
      // Only the key's holder can read the credential of a runner that already had this key: a
      // token and a public key alone must not be enough to act as a registered runner.
      return { runner, from, pool, secret, distribution, lost, firstKey: !existing?.publicKey };
    });
    auth.invalidate();
    claims.forget(id); // a restarted agent numbers its claims anew
    if (result.from === 'starting') ctx.metrics.coldStart.observe({ pool: result.pool.name }, (now - result.runner.createdAt.getTime()) / 1000);
    if (result.lost.length) ctx.bus.emit('work-queued', result.pool.name, result.lost.length);
    ctx.bus.emit('runners-changed', 'fleet');
    ctx.log.info({ runnerId: id, pool: result.pool.name, name: body.name }, 'runner registered');
    return c.json({
      runner: result.runner,
      ...(result.firstKey ? { credential: result.secret } : {}),
      sealedCredential: sealTo(body.publicKey, { credential: result.secret }),
      config: { ...runnerConfig(ctx, result.pool, result.runner), distribution: result.distribution },
    }, 201);
  });

  // A terminated runner's credential is revoked. Tell its agent "gone" (410, stop for good) rather
  // than "unauthorized" (401, which an agent cannot tell apart from a credential taken over by
  // another registration of its id).
  app.use('/:id/*', async (c, next) => {
    const id = c.req.param('id')?.toLowerCase() ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(c.req.header('authorization') ?? '');
    if (m && /^[0-9a-f-]{36}$/.test(id) && !(await auth.resolve(m[1]!))) {
      const token = await findTokenBySecret(ctx.db, m[1]!);
      if (token?.kind === 'runner' && token.runnerId === id && (await findRunner(ctx.db, id))?.state === 'terminated') throw new GoneError(`runner ${id} was terminated`);
    }
    await next();
  });

  app.use('*', auth.middleware());

  app.get('/:id/control', async (c) => {
    const id = parseUuid(c);
    requireRunner(c.var.principal, id);
    const runner = await getRunner(ctx.db, id);
    if (runner.state === 'terminated') throw new GoneError(`runner ${id} was terminated`);
    // Written straight to Node's response: a server holds one of these per runner, and a web
    // stream per connection cost ~5x the memory and made a fan-out to all of them seconds long.
    const res = (c.env as HttpBindings).outgoing;
    // A runner that hung up while the lookups above ran: its 'close' has already fired.
    if (res.destroyed || c.req.raw.signal?.aborted) return RESPONSE_ALREADY_SENT;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    let ping: NodeJS.Timeout | undefined;
    let disconnect: (() => void) | undefined;
    const closed = () => {
      if (!disconnect) return;
      clearInterval(ping);
      disconnect();
      disconnect = undefined;
      ctx.metrics.controlChannels.set(ctx.hub.connectionCount());
    };
    const send: ControlSend = (event, data, frame) => {
      if (res.destroyed || res.writableEnded) return closed();
      // A runner that stopped reading is cut off rather than buffered for: it reconnects.
      if (res.writableLength > MAX_UNREAD_CONTROL_BYTES) return void res.destroy();
      res.write(frame ?? sseFrame(event, data));
    };
    disconnect = ctx.hub.connect(id, runner.pool, send);
    ctx.metrics.controlChannels.set(ctx.hub.connectionCount());
    res.once('close', closed);
    send('hello', { state: runner.state });
    if (runner.state === 'disabled') send('disable', {});
    if (runner.state === 'draining') send('drain', {});
    ping = setInterval(() => send('ping', { at: ctx.clock.now() }), ctx.config.runner.pingInterval);
    return RESPONSE_ALREADY_SENT;
  });

  app.post('/:id/heartbeat', async (c) => {
    const id = parseUuid(c);
    requireRunner(c.var.principal, id);
    const body = await readJson(c, heartbeatSchema);
    const now = ctx.clock.now();
    // Before the read: a claim recorded after this point sees it abandoned and undoes itself.
    const abandoned = claims.abandon(id, body.abandoned, now);
    const runner = await ctx.heartbeats.view(id);
    if (!runner || runner.state === 'terminated') throw new GoneError(`runner ${id} was terminated`);
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
      ctx.bus.emit('work-queued', c.var.principal.pool, unclaimed.length);
    }
    let state: RunnerState = runner.state;
    if (state === 'offline') {
      await ctx.db.transaction((tx) => resumeRunner(tx, now, id));
      ctx.bus.emit('runners-changed', 'fleet');
      state = (await getRunner(ctx.db, id)).state;
    }
    return c.json({ state, cancel, lost, servers: ctx.servers?.() ?? [] });
  });

  app.post('/:id/claim', async (c) => {
    const id = parseUuid(c);
    requireRunner(c.var.principal, id);
    const body = await readJson(c, claimSchema);
    const pool = c.var.principal.pool;
    const abort = new AbortController();
    c.req.raw.signal?.addEventListener('abort', () => abort.abort(), { once: true });
    const deadline = Date.now() + body.waitMs;
    for (;;) {
      // A runner that hung up must not be handed jobs it will never see.
      if (abort.signal.aborted || (body.seq !== undefined && claims.isAbandoned(id, body.seq))) return c.json({ jobs: [] });
      const gen = ctx.hub.generation(pool);
      const jobs = await tryClaim(ctx, id, body.max);
      if (jobs.length > 0 && body.seq !== undefined && claims.record(id, body.seq, jobs.map((j) => ({ id: j.id, attempt: j.attempt })), ctx.clock.now())) {
        // The runner gave this claim up while it was being made: the jobs go back at once.
        const now = ctx.clock.now();
        await ctx.db.transaction((tx) => recoverJobs(tx, now, jobs.map((j) => j.id), 'claim abandoned by the runner', { runnerId: id, refundUnstarted: true }));
        ctx.bus.emit('work-queued', pool, jobs.length);
        return c.json({ jobs: [] });
      }
      if (jobs.length > 0 || abort.signal.aborted) return c.json({ jobs });
      const left = deadline - Date.now();
      if (left <= 0) return c.json({ jobs: [] });
      // The periodic re-check covers jobs enqueued through another server.
      await ctx.hub.park(pool, gen, abort.signal, Math.min(left, 2000));
    }
  });

  // An agent stopped by Ctrl-C keeps its identity: offline now (not after the heartbeat timeout,
  // so no phantom idle capacity), registered again with the same id on its next start.
  app.post('/:id/offline', async (c) => {
    const id = parseUuid(c);
    requireRunner(c.var.principal, id);
    const now = ctx.clock.now();
    const lost = await ctx.db.transaction(async (tx) => {
      const went = await transitionRunner(tx, now, id, 'offline', 'agent stopped; it keeps its identity', { from: ['idle', 'busy', 'draining', 'disabled'], actor: id });
      return went ? recoverJobs(tx, now, await activeJobIdsOfRunner(tx, id), 'runner stopped', { runnerId: id }) : [];
    });
    ctx.bus.emit('runners-changed', 'fleet');
    if (lost.length) ctx.bus.emit('work-queued', c.var.principal.pool, lost.length);
    return c.json({ ok: true });
  });

  app.post('/:id/deregister', async (c) => {
    const id = parseUuid(c);
    requireRunner(c.var.principal, id);
    await terminateRunner(ctx, ctx.clock.now(), id, 'agent exited', { actor: id, jobsReason: 'runner exited' });
    claims.forget(id);
    return c.json({ ok: true });
  });

  return app;
}

/** One claim attempt: respects the runner's state, free slots, config hash and ephemerality. */
async function tryClaim(ctx: AppContext, runnerId: string, max: number): Promise<ClaimedJob[]> {
  const now = ctx.clock.now();
  const started = performance.now();
  const { runnerState, publicKey, jobs } = await claimForRunner(ctx.db, now, runnerId, max);
  // The claim reads the runner's row anyway: a runner terminated through any server is told at once.
  if (runnerState === 'terminated') throw new GoneError(`runner ${runnerId} was terminated`);
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
  })) as any;
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
    if ((err instanceof ConflictError || err instanceof NotFoundError) && (await findRunnerState(ctx.db, runnerId)) === 'terminated') throw new GoneError(`runner ${runnerId} was terminated`);
    throw err;
  }
}

export function runnerJobRouter(ctx: AppContext) {
  const app = new Hono<Env>();
  const results = new JobCompleter(ctx.db, ctx.clock);

  app.post('/:id/start', async (c) => {
    const p = c.var.principal;
    requireRunner(p);
    const jobId = parseId(c);
    const body = await readJson(c, z.strictObject(fenceSchema));
    const job = await fenced(ctx, p.runnerId, () => markRunning(ctx.db, ctx.clock.now(), { jobId, runnerId: p.runnerId, attempt: body.attempt }));
    ctx.bus.emit('job-changed', jobId);
    return c.json({ state: job.state, cancel: job.cancelRequested });
  });

  app.post('/:id/logs', async (c) => {
    const p = c.var.principal;
    if (p.kind !== 'runner') return c.notFound();
    const jobId = parseId(c);
    const body = await readJson(c, logSchema);
    const r = await fenced(ctx, p.runnerId, () => appendLogs(ctx.db, ctx.clock.now(), { jobId, runnerId: p.runnerId, attempt: body.attempt }, body.seq, body.lines));
    ctx.bus.emit('log-appended', jobId);
    return c.json({ cancel: r.cancelRequested });
  });

  app.post('/:id/result', async (c) => {
    const p = c.var.principal;
    requireRunner(p);
    const jobId = parseId(c);
    const body = await readJson(c, resultSchema);
    const job = await fenced(ctx, p.runnerId, () => results.complete({ jobId, runnerId: p.runnerId, attempt: body.attempt }, body));
    const now = ctx.clock.now();
    if (job.state === 'queued') ctx.bus.emit('work-queued', job.pool, 1);
    else {
      ctx.metrics.jobOutcomes.inc({ pool: job.pool, state: job.state });
      if (job.startedAt) ctx.metrics.runTime.observe({ pool: job.pool }, (now - job.startedAt.getTime()) / 1000);
    }
    ctx.bus.emit('job-changed', jobId);
    ctx.bus.emit('runners-changed', 'load');
    return c.json({ state: job.state });
  });

  return app;
}
