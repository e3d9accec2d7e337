/*
 * The runner protocol over HTTP: register -> control channel (SSE) -> heartbeats -> claim (long
 * poll) -> start -> logs -> result. The routes parse and authenticate; the use cases are in
 * src/app/runners.ts.
 */
import { Hono } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { appendJobLogs, claim, connectControl, controlRunner, deregister, goOffline, heartbeat, register, reportResult, startJob } from '../app/runners.js';
import { sseFrame, type ControlSend } from '../app/control-hub.js';
import type * as wire from '../protocol/runner.js';
import type { Authenticator } from './auth.js';
import { requireRunner } from './auth.js';
import { parseId, parseUuid, readJson, type Env } from './http.js';
import { findRunner } from '../store/queries/runners.js';
import { findTokenBySecret } from '../store/queries/tokens.js';
import { isValidPublicKey } from '../lib/sealed.js';
import { ForbiddenError, GoneError, UnauthorizedError } from '../lib/errors.js';
import { INT4_MAX, INT8_MAX, MAX_EPOCH_MS, boundedInt, jsonValue, labels, safeString } from '../lib/validation.js';

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

export function runnerProtocolRouter(ctx: AppContext, auth: Authenticator) {
  const app = new Hono<Env>();

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
    const body = (await readJson(c, registerSchema)) satisfies wire.RegisterRequest;
    const id = body.id.toLowerCase();
    if (principal.runnerId && principal.runnerId !== id) throw new ForbiddenError('this registration token belongs to another runner', 'id');
    const answer = await register(ctx, principal, { ...body, id });
    auth.invalidate();
    return c.json(answer satisfies wire.RegisterResponse, 201);
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
    const runner = await controlRunner(ctx, id);
    // Written straight to Node's response: a server holds one of these per runner, and a web
    // stream per connection cost ~5x the memory and made a fan-out to all of them seconds long.
    const res = (c.env as HttpBindings).outgoing;
    // A runner that hung up while the lookup above ran: its 'close' has already fired.
    if (res.destroyed || c.req.raw.signal?.aborted) return RESPONSE_ALREADY_SENT;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    let close: (() => void) | undefined;
    const send: ControlSend = (event, data, frame) => {
      if (res.destroyed || res.writableEnded) return close?.();
      // A runner that stopped reading is cut off rather than buffered for: it reconnects.
      if (res.writableLength > MAX_UNREAD_CONTROL_BYTES) return void res.destroy();
      res.write(frame ?? sseFrame(event, data));
    };
    close = connectControl(ctx, runner, send);
    res.once('close', close);
    if (res.destroyed) close();
    return RESPONSE_ALREADY_SENT;
  });

  app.post('/:id/heartbeat', async (c) => {
    const id = parseUuid(c);
    requireRunner(c.var.principal, id);
    const body = (await readJson(c, heartbeatSchema)) satisfies wire.HeartbeatRequest;
    return c.json((await heartbeat(ctx, id, c.var.principal.pool, body)) satisfies wire.HeartbeatResponse);
  });

  app.post('/:id/claim', async (c) => {
    const id = parseUuid(c);
    requireRunner(c.var.principal, id);
    const body = (await readJson(c, claimSchema)) satisfies wire.ClaimRequest;
    const abort = new AbortController();
    c.req.raw.signal?.addEventListener('abort', () => abort.abort(), { once: true });
    return c.json({ jobs: await claim(ctx, id, c.var.principal.pool, body, abort.signal) } satisfies wire.ClaimResponse);
  });

  // An agent stopped by Ctrl-C keeps its identity (see goOffline).
  app.post('/:id/offline', async (c) => {
    const id = parseUuid(c);
    requireRunner(c.var.principal, id);
    await goOffline(ctx, id, c.var.principal.pool);
    return c.json({ ok: true } satisfies wire.OkResponse);
  });

  app.post('/:id/deregister', async (c) => {
    const id = parseUuid(c);
    requireRunner(c.var.principal, id);
    await deregister(ctx, id);
    return c.json({ ok: true } satisfies wire.OkResponse);
  });

  return app;
}

export function runnerJobRouter(ctx: AppContext) {
  const app = new Hono<Env>();

  app.post('/:id/start', async (c) => {
    const p = c.var.principal;
    requireRunner(p);
    const jobId = parseId(c);
    const body = (await readJson(c, z.strictObject(fenceSchema))) satisfies wire.StartRequest;
    const job = await startJob(ctx, { jobId, runnerId: p.runnerId, attempt: body.attempt });
    return c.json({ state: job.state, cancel: job.cancelRequested } satisfies wire.StartResponse);
  });

  app.post('/:id/logs', async (c) => {
    const p = c.var.principal;
    if (p.kind !== 'runner') return c.notFound();
    const jobId = parseId(c);
    const body = (await readJson(c, logSchema)) satisfies wire.LogsRequest;
    const r = await appendJobLogs(ctx, { jobId, runnerId: p.runnerId, attempt: body.attempt }, body.seq, body.lines);
    return c.json({ cancel: r.cancelRequested } satisfies wire.LogsResponse);
  });

  app.post('/:id/result', async (c) => {
    const p = c.var.principal;
    requireRunner(p);
    const jobId = parseId(c);
    const body = (await readJson(c, resultSchema)) satisfies wire.JobResultBody;
    const job = await reportResult(ctx, { jobId, runnerId: p.runnerId, attempt: body.attempt }, body);
    return c.json({ state: job.state } satisfies wire.ResultResponse);
  });

  return app;
}
