import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import type { AppContext } from '../app/context.js';
import { cancelJob, followJobLogs, jobLogs, jobSpecSchema, jobView, prepareSpecs, retryJobAgain, submitJobs } from '../app/jobs.js';
import { actorOf, requireAdmin } from './auth.js';
import { parseId, query, readJson, type Env } from './http.js';
import { slug } from '../config/schema.js';
import { INT8_MAX, intQuery } from '../lib/validation.js';
import { getJob, listJobs } from '../queue/read.js';
import type { JobState } from '../queue/job.js';
import { listEvents } from '../store/queries/events.js';

const KEEPALIVE_MS = 15_000;
const JOB_STATES = ['queued', 'claimed', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;

export function jobsRouter(ctx: AppContext) {
  const app = new Hono<Env>();

  app.post('/', async (c) => {
    requireAdmin(c.var.principal);
    const input = await readJson(c, jobSpecSchema);
    const [r] = await submitJobs(ctx, await prepareSpecs(ctx, [input]), actorOf(c.var.principal));
    return c.json({ job: r!.job, created: r!.created }, r!.created ? 201 : 200);
  });

  app.post('/batch', async (c) => {
    requireAdmin(c.var.principal);
    const body = await readJson(c, z.strictObject({ jobs: z.array(jobSpecSchema).min(1).max(ctx.config.limits.maxBatch) }));
    const results = await submitJobs(ctx, await prepareSpecs(ctx, body.jobs, 'api', 'jobs[].'), actorOf(c.var.principal));
    return c.json({ jobs: results.map((r) => ({ ...r.job, created: r.created })) }, 201);
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
    return c.json({ jobs, nextBefore: jobs.length === q.limit ? jobs[jobs.length - 1]!.id : null });
  });

  app.get('/:id', async (c) => {
    requireAdmin(c.var.principal);
    // only on a queued job whose pool cannot start runners: why it waits
    return c.json({ job: await jobView(ctx, parseId(c)) });
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
    return c.json({ job: await cancelJob(ctx, parseId(c), actorOf(c.var.principal)) });
  });

  app.post('/:id/retry', async (c) => {
    requireAdmin(c.var.principal);
    return c.json({ job: await retryJobAgain(ctx, parseId(c), actorOf(c.var.principal)) });
  });

  app.get('/:id/logs', async (c) => {
    requireAdmin(c.var.principal);
    const id = parseId(c);
    // after is a log sequence number (int4): a larger one is a 400, not a database error
    const q = query(c, z.object({ after: intQuery(0).default(0), follow: z.enum(['0', '1', 'true', 'false']).optional(), limit: z.coerce.number().int().min(1).max(5000).default(1000) }));
    if (q.follow !== '1' && q.follow !== 'true') return c.json(await jobLogs(ctx, id, q.after, q.limit));
    const abort = new AbortController();
    const events = await followJobLogs(ctx, id, q.after, abort.signal);
    return streamSSE(c, async (stream) => {
      stream.onAbort(() => abort.abort());
      let lastWrite = Date.now();
      for await (const e of events) {
        if (e.kind === 'log') await stream.writeSSE({ event: 'log', id: String(e.seq), data: JSON.stringify({ seq: e.seq, lines: e.lines }) });
        else if (e.kind === 'end') await stream.writeSSE({ event: 'end', data: JSON.stringify({ state: e.state, exitCode: e.exitCode, error: e.error }) });
        else if (e.kind === 'waiting') await stream.writeSSE({ event: 'waiting', data: JSON.stringify({ reason: e.reason }) });
        // A comment line now and then keeps proxies and idle timeouts from cutting a quiet job's stream.
        else if (Date.now() - lastWrite > KEEPALIVE_MS) await stream.write(': keepalive\n\n');
        else continue;
        lastWrite = Date.now();
      }
    });
  });

  return app;
}

