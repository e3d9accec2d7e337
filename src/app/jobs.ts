/**
 * Job use cases: validate, prepare, submit, cancel, retry, follow. The HTTP routes
 * (src/api/jobs.ts) and the GitHub source call these; nothing here knows HTTP.
 */
import { z } from 'zod';
import type { AppContext } from './context.js';
import { jobActivity, waitForAny } from './bus.js';
import { resolveJobImage } from './images.js';
import { distributionProblem, providerProblem } from './pool-checks.js';
import { slug, type ClassSize } from '../config/schema.js';
import { boundedInt, duration, envMap, jsonValue, labels, safeString } from '../lib/validation.js';
import { cancelJob as cancelJobTx } from '../queue/cancel.js';
import { enqueue } from '../queue/submit.js';
import { getJob, readLogs } from '../queue/read.js';
import { retryJob } from '../queue/retry.js';
import { FINAL_STATES, type Job, type JobSpec } from '../queue/job.js';
import { getPool, getWaitingReason, listPools, type Pool } from '../store/queries/pools.js';
import { StoreUnavailableError } from '../store/store-errors.js';
import { encryptAtRest } from '../lib/sealed.js';
import { NotFoundError, UnprocessableError } from '../lib/errors.js';

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
export async function waitingReasonOf(ctx: Pick<AppContext, 'db'>, job: Job): Promise<string | null> {
  if (job.state !== 'queued') return null;
  return getWaitingReason(ctx.db, job.pool);
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


/** Cancels a job; a runner running it is told at once. */
export async function cancelJob(ctx: AppContext, id: number, actor: string): Promise<Job> {
  const { job, signalRunner } = await ctx.db.transaction((tx) => cancelJobTx(tx, ctx.clock.now(), id, actor));
  if (signalRunner) ctx.hub.send(signalRunner, 'cancel', { jobId: id });
  ctx.bus.emit('job-changed', id);
  if (job.state === 'cancelled') ctx.metrics.jobOutcomes.inc({ pool: job.pool, state: 'cancelled' });
  return job;
}

/** Queues a finished job again (a new attempt). */
export async function retryJobAgain(ctx: AppContext, id: number, actor: string): Promise<Job> {
  const job = await ctx.db.transaction((tx) => retryJob(tx, ctx.clock.now(), id, actor));
  ctx.bus.emit('work-queued', job.pool, 1);
  ctx.bus.emit('job-changed', id);
  return job;
}

/** A job as the API shows it: a queued job whose pool cannot start runners says why it waits. */
export async function jobView(ctx: AppContext, id: number): Promise<Job & { waitingReason?: string }> {
  const job = await getJob(ctx.db, id);
  const waitingReason = await waitingReasonOf(ctx, job);
  return { ...job, ...(waitingReason ? { waitingReason } : {}) };
}

/** Log lines after `after`, with the job's state read after them. */
export async function jobLogs(ctx: AppContext, id: number, after: number, limit: number) {
  await getJob(ctx.db, id);
  const batches = await readLogs(ctx.db, id, after, limit);
  const job = await getJob(ctx.db, id);
  return {
    lines: batches.flatMap((b) => b.lines.map((l) => ({ seq: b.seq, ...l }))),
    nextAfter: batches.length ? batches[batches.length - 1]!.seq : after,
    state: job.state,
    finished: FINAL_STATES.includes(job.state),
  };
}

export type LogFollowEvent =
  | { kind: 'log'; seq: number; lines: Awaited<ReturnType<typeof readLogs>>[number]['lines'] }
  | { kind: 'end'; state: Job['state']; exitCode: number | null; error: string | null }
  | { kind: 'waiting'; reason: string }
  | { kind: 'idle' };

const FOLLOW_BATCH = 500;

/**
 * Follows a job's logs until it finishes or `signal` aborts: log batches, why it waits (once, and
 * again when it changes), the end. `idle` is yielded after each quiet wait, so the caller can
 * keep the connection alive. Woken by this server's appends; the one-second timeout covers
 * appends made on another server.
 */
export async function followJobLogs(ctx: AppContext, id: number, after: number, signal: AbortSignal): Promise<AsyncGenerator<LogFollowEvent>> {
  await getJob(ctx.db, id); // an unknown job is a 404 before the stream opens
  return follow(ctx, id, after, signal);
}

async function* follow(ctx: AppContext, id: number, after: number, signal: AbortSignal): AsyncGenerator<LogFollowEvent> {
  let lastWaiting: string | null = null;
  while (!signal.aborted) {
    // read the state before the logs: a job seen finished has no logs still to come
    let job: Job;
    let batches: Awaited<ReturnType<typeof readLogs>>;
    try {
      job = await getJob(ctx.db, id);
      batches = await readLogs(ctx.db, id, after, FOLLOW_BATCH);
    } catch (err) {
      // a database restart does not cut a follower off: it waits and reads on
      if (!(err instanceof StoreUnavailableError)) throw err;
      await waitForAny(ctx.bus, [], 1000, signal);
      continue;
    }
    for (const b of batches) {
      yield { kind: 'log', seq: b.seq, lines: b.lines };
      after = b.seq;
    }
    if (batches.length === FOLLOW_BATCH) continue;
    if (FINAL_STATES.includes(job.state)) {
      yield { kind: 'end', state: job.state, exitCode: job.exitCode, error: job.error };
      return;
    }
    const waiting = await waitingReasonOf(ctx, job);
    if (waiting !== lastWaiting) {
      if (waiting) yield { kind: 'waiting', reason: waiting };
      lastWaiting = waiting;
    }
    yield { kind: 'idle' };
    await waitForAny(ctx.bus, jobActivity(id), 1000, signal);
  }
}
