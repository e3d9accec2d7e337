import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { actorOf, requireAdmin } from './auth.js';
import { parseId, query, readJson, type Env } from './http.js';
import { slug, type ClassSize } from '../config/schema.js';
import { INT8_MAX, boundedInt, duration, envMap, intQuery, jsonValue, labels, safeString } from '../lib/validation.js';
import { resolveJobImage } from '../providers/container/dynamic-images.js';
import { cancelJob, enqueue, getJob, listJobs, readLogs, retryJob, FINAL_STATES, type Job, type JobSpec, type JobState } from '../queue/jobs.js';
import { getPool, listPools, type Pool } from '../store/queries/pools.js';
import { poolWaitingReason } from '../store/stats.js';
import { listEvents } from '../store/queries/events.js';
import { encryptAtRest } from '../lib/sealed.js';
import { NotFoundError, UnprocessableError } from '../lib/errors.js';
import { jobActivity, waitForAny } from '../app/bus.js';
import { StoreUnavailableError } from '../store/store-errors.js';
import { distributionProblem, providerProblem } from '../app/pool-checks.js';

const KEEPALIVE_MS = 15_000;
const JOB_STATES = ['queued', 'claimed', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;
const command = safeString({ min: 1, max: 100_000 });

export const jobSpecSchema = z
  .strictObject({
    pool: slug.optional(),
    commands: z.array(command).min(1).max(100).optional(),
    command: command.optional(),
    payload: jsonValue().optional(),
    env: envMap.optional(),
    secrets: envMap.optional(),
    labels: labels.optional(),
    image: safeString({ min: 1, max: 512 }).optional(),
    /** what the job needs: refused when no class size offers it, or the pool's class is smaller */
    cpu: z.number().positive().max(1024).optional(),
    memoryMb: boundedInt(1, 4_194_304).optional(),
    idempotencyKey: safeString({ min: 1, max: 200 }).optional(),
    maxAttempts: boundedInt(1, 100).optional(),
    retryOnFailure: z.boolean().optional(),
    timeout: duration({ positive: true }).optional(),
  })
  .superRefine((s, ctx) => {
    if (!s.commands && !s.command) ctx.addIssue({ code: 'custom', path: ['commands'], message: 'give commands (an array of shell commands) or command' });
    if (s.commands && s.command) ctx.addIssue({ code: 'custom', path: ['command'], message: 'give either commands or command, not both' });
  });
export type JobSpecInput = z.output<typeof jobSpecSchema>;

/** The job as the user API shows it: a Job never carries secrets (only their names). */
export function publicJob(j: Job) {
  return j;
}

/**
 * Resolves pools, applies defaults and encrypts secrets; throws 422 for an unknown pool.
 * `fieldPrefix` names the spec in errors; its "[]" is replaced by the spec's index ("jobs[3].").
 */
export async function prepareSpecs(ctx: AppContext, inputs: JobSpecInput[], source = 'api', fieldPrefix = ''): Promise<JobSpec[]> {
  const pools = new Map<string, Pool>();
  let defaultPool: string | undefined;
  const out: JobSpec[] = [];
  for (const [i, s] of inputs.entries()) {
    const poolField = `${fieldPrefix.replace('[]', `[${i}]`)}pool`;
    let name = s.pool;
    if (!name) {
      if (defaultPool === undefined) {
        const all = await listPools(ctx.db);
        defaultPool = all.find((p) => p.name === 'local')?.name ?? (all.length === 1 ? all[0]!.name : '');
      }
      if (!defaultPool) throw new UnprocessableError('pool is required: more than one pool exists and none is named local', poolField);
      name = defaultPool;
    }
    if (!pools.has(name)) {
      // only "not found" is an unknown pool: a store outage stays a 503
      const pool = await getPool(ctx.db, name).catch((err) => (err instanceof NotFoundError ? undefined : Promise.reject(err)));
      if (!pool) throw new UnprocessableError(`unknown pool ${JSON.stringify(name)}; see \`runyard pools list\``, poolField);
      // a job its pool can never run is refused, not left waiting (checked once per pool)
      const cannot = providerProblem(ctx.providers, pool.config) ?? (await distributionProblem(ctx.db, pool.config));
      if (cannot) throw new UnprocessableError(cannot, poolField);
      pools.set(name, pool);
    }
    const pool = pools.get(name)!;
    const field = (f: string) => `${fieldPrefix.replace('[]', `[${i}]`)}${f}`;
    checkResources(ctx.classSizes, pool, s, field);
    out.push({
      pool: name,
      commands: s.commands ?? [s.command!],
      payload: s.payload,
      env: s.env,
      secretsEnc: s.secrets && Object.keys(s.secrets).length ? encryptAtRest(ctx.secretKey, s.secrets) : null,
      secretNames: Object.keys(s.secrets ?? {}),
      labels: s.labels,
      image: resolveJobImage(pool.config, s.image, field('image')),
      idempotencyKey: s.idempotencyKey,
      maxAttempts: s.maxAttempts,
      retryOnFailure: s.retryOnFailure,
      timeoutMs: s.timeout ?? pool.config.jobTimeout,
      source,
    });
  }
  return out;
}

/**
 * A job that asks for more CPU or memory than it can get is refused at submit, not left queued:
 * it must fit some class size, and the class of its pool when the pool has one.
 */
function checkResources(classSizes: Record<string, ClassSize>, pool: Pool, s: JobSpecInput, field: (f: string) => string) {
  if (s.cpu === undefined && s.memoryMb === undefined) return;
  const need = [s.cpu !== undefined ? `${s.cpu} CPU` : '', s.memoryMb !== undefined ? `${s.memoryMb} MB` : ''].filter(Boolean).join(' and ');
  const fits = (c: ClassSize) => (s.cpu ?? 0) <= c.cpu && (s.memoryMb ?? 0) <= c.memoryMb;
  const sizes = Object.entries(classSizes);
  if (sizes.length > 0 && !sizes.some(([, c]) => fits(c))) {
    const culprit = sizes.every(([, c]) => (s.cpu ?? 0) > c.cpu) ? 'cpu' : 'memoryMb';
    throw new UnprocessableError(`the job needs ${need}, more than any class size allows (${sizes.map(([n, c]) => `${n}: ${c.cpu} CPU, ${c.memoryMb} MB`).join('; ')})`, field(culprit));
  }
  const own = pool.config.class ? classSizes[pool.config.class] : undefined;
  if (own && !fits(own))
    throw new UnprocessableError(
      `the job needs ${need}, more than pool ${pool.name}'s class ${pool.config.class} (${own.cpu} CPU, ${own.memoryMb} MB); submit it to a pool of a larger class`,
      field((s.cpu ?? 0) > own.cpu ? 'cpu' : 'memoryMb'),
    );
}

/** Why a queued job waits (its pool's runners cannot be started), or null. */
async function waitingReasonOf(ctx: AppContext, job: Job): Promise<string | null> {
  if (job.state !== 'queued') return null;
  return poolWaitingReason(ctx.db, job.pool);
}

export async function submitJobs(ctx: AppContext, specs: JobSpec[], actor: string) {
  const results = await enqueue(ctx.db, ctx.clock.now(), specs, actor);
  const perPool = new Map<string, number>();
  for (const r of results) {
    if (!r.created) continue;
    perPool.set(r.job.pool, (perPool.get(r.job.pool) ?? 0) + 1);
    ctx.metrics.jobsSubmitted.inc({ pool: r.job.pool, source: r.job.source });
  }
  for (const [pool, count] of perPool) ctx.bus.emit('work-queued', pool, count);
  return results;
}

export function jobsRouter(ctx: AppContext) {
  const app = new Hono<Env>();

  app.post('/', async (c) => {
    requireAdmin(c.var.principal);
    const input = await readJson(c, jobSpecSchema);
    const [r] = await submitJobs(ctx, await prepareSpecs(ctx, [input]), actorOf(c.var.principal));
    return c.json({ job: publicJob(r!.job), created: r!.created }, r!.created ? 201 : 200);
  });

  app.post('/batch', async (c) => {
    requireAdmin(c.var.principal);
    const body = await readJson(c, z.strictObject({ jobs: z.array(jobSpecSchema).min(1).max(ctx.config.limits.maxBatch) }));
    const results = await submitJobs(ctx, await prepareSpecs(ctx, body.jobs, 'api', 'jobs[].'), actorOf(c.var.principal));
    return c.json({ jobs: results.map((r) => ({ ...publicJob(r.job), created: r.created })) }, 201);
  });

  app.get('/', async (c) => {
    requireAdmin(c.var.principal);
    const q = query(
      c,
      z.object({
        state: z
          .string()
          .transform((s) => s.split(','))
          .pipe(z.array(z.enum(JOB_STATES)))
          .optional(),
        pool: slug.optional(),
        runner: z.uuid().optional(),
        limit: z.coerce.number().int().min(1).max(1000).default(50),
        before: intQuery(1, INT8_MAX).optional(),
      }),
    );
    const jobs = await listJobs(ctx.db, { state: q.state as JobState[] | undefined, pool: q.pool, runnerId: q.runner, before: q.before, limit: q.limit });
    return c.json({ jobs: jobs.map(publicJob), nextBefore: jobs.length === q.limit ? jobs[jobs.length - 1]!.id : null });
  });

  app.get('/:id', async (c) => {
    requireAdmin(c.var.principal);
    const job = await getJob(ctx.db, parseId(c));
    // only on a queued job whose pool cannot start runners: why it waits
    const waitingReason = await waitingReasonOf(ctx, job);
    return c.json({ job: { ...publicJob(job), ...(waitingReason ? { waitingReason } : {}) } });
  });

  app.get('/:id/events', async (c) => {
    requireAdmin(c.var.principal);
    const id = parseId(c);
    await getJob(ctx.db, id);
    const events = await listEvents(ctx.db, { kind: 'job', subject: String(id), after: 0, limit: 1000 });
    return c.json({ events });
  });

  app.post('/:id/cancel', async (c) => {
    requireAdmin(c.var.principal);
    const id = parseId(c);
    const { job, signalRunner } = await ctx.db.transaction((tx) => cancelJob(tx, ctx.clock.now(), id, actorOf(c.var.principal)));
    if (signalRunner) ctx.hub.send(signalRunner, 'cancel', { jobId: id });
    ctx.bus.emit('job-changed', id);
    if (job.state === 'cancelled') ctx.metrics.jobOutcomes.inc({ pool: job.pool, state: 'cancelled' });
    return c.json({ job: publicJob(job) });
  });

  app.post('/:id/retry', async (c) => {
    requireAdmin(c.var.principal);
    const id = parseId(c);
    const job = await ctx.db.transaction((tx) => retryJob(tx, ctx.clock.now(), id, actorOf(c.var.principal)));
    ctx.bus.emit('work-queued', job.pool, 1);
    ctx.bus.emit('job-changed', id);
    return c.json({ job: publicJob(job) });
  });

  app.get('/:id/logs', async (c) => {
    requireAdmin(c.var.principal);
    const id = parseId(c);
    // after is a log sequence number (int4): a larger one is a 400, not a database error
    const q = query(c, z.object({ after: intQuery(0).default(0), follow: z.enum(['0', '1', 'true', 'false']).optional(), limit: z.coerce.number().int().min(1).max(5000).default(1000) }));
    await getJob(ctx.db, id);
    if (q.follow !== '1' && q.follow !== 'true') {
      const batches = await readLogs(ctx.db, id, q.after, q.limit);
      const job = await getJob(ctx.db, id);
      return c.json({
        lines: batches.flatMap((b) => b.lines.map((l) => ({ seq: b.seq, ...l }))),
        nextAfter: batches.length ? batches[batches.length - 1]!.seq : q.after,
        state: job.state,
        finished: FINAL_STATES.includes(job.state),
      });
    }
    return streamSSE(c, async (stream) => {
      const abort = new AbortController();
      stream.onAbort(() => abort.abort());
      let after = q.after;
      let lastWrite = Date.now();
      let lastWaiting: string | null = null;
      while (!abort.signal.aborted) {
        // read the state before the logs: a job seen finished has no logs still to come
        let job: Job;
        let batches: Awaited<ReturnType<typeof readLogs>>;
        try {
          job = await getJob(ctx.db, id);
          batches = await readLogs(ctx.db, id, after, 500);
        } catch (err) {
          // a database restart does not cut a follower off: it waits and reads on
          if (!(err instanceof StoreUnavailableError)) throw err;
          await waitForAny(ctx.bus, [], 1000, abort.signal);
          continue;
        }
        for (const b of batches) {
          await stream.writeSSE({ event: 'log', id: String(b.seq), data: JSON.stringify({ seq: b.seq, lines: b.lines }) });
          after = b.seq;
          lastWrite = Date.now();
        }
        if (batches.length === 500) continue;
        if (FINAL_STATES.includes(job.state)) {
          await stream.writeSSE({ event: 'end', data: JSON.stringify({ state: job.state, exitCode: job.exitCode, error: job.error }) });
          break;
        }
        // why a queued job waits, once and again whenever it changes
        const waiting = await waitingReasonOf(ctx, job);
        if (waiting !== lastWaiting) {
          if (waiting) await stream.writeSSE({ event: 'waiting', data: JSON.stringify({ reason: waiting }) });
          lastWaiting = waiting;
          lastWrite = Date.now();
        }
        // A comment line now and then keeps proxies and idle timeouts from cutting a quiet job's stream.
        if (Date.now() - lastWrite > KEEPALIVE_MS) {
          await stream.write(': keepalive\n\n');
          lastWrite = Date.now();
        }
        // woken by this server's log appends; the timeout covers appends made on another server
        await waitForAny(ctx.bus, jobActivity(id), 1000, abort.signal);
      }
    });
  });

  return app;
}

