import { Hono } from 'hono';
import type { AppContext } from '../app/context.js';
import { Authenticator, actorOf, requireAdmin } from './auth.js';
import { ForbiddenError, UnauthorizedError } from '../lib/errors.js';
import { StoreUnavailableError, storeError } from '../store/store-errors.js';
import { bodyLimit, errorBody, toErrorResponse, type Env } from './http.js';
import { jobsRouter } from './jobs.js';
import { runnerJobRouter, runnerProtocolRouter } from './runner-protocol.js';
import { runnersRouter } from './runners.js';
import { poolsRouter } from './pools.js';
import { tokensRouter } from './tokens.js';
import { eventsRouter } from './events.js';
import { artifactsRouter } from './artifacts.js';
import { statsRouter } from './stats.js';
import { streamRouter } from './stream.js';
import { pingStore } from '../store/queries/meta.js';
import { activeJobCounts, liveRunnerCounts } from '../store/queries/gauges.js';
import { webRouter } from '../web/router.js';
import { githubWebhookRouter } from './github-webhook.js';
import type { GithubSource } from '../github/service.js';

export function createApp(ctx: AppContext, services: { github: GithubSource }) {
  const app = new Hono<Env>();
  const auth = new Authenticator(ctx);

  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    const route = c.req.routePath ?? 'unmatched';
    ctx.metrics.httpLatency.observe({ method: c.req.method, route, status: String(c.res.status) }, (performance.now() - started) / 1000);
  });

  app.onError(async (err, c) => {
    // Every refused call, unauthenticated (401) or wrongly scoped (403), leaves an audit line.
    if (err instanceof ForbiddenError || err instanceof UnauthorizedError) await auth.audit(c, err.message, c.get('principal') ? actorOf(c.get('principal')) : 'anonymous');
    return toErrorResponse(err, c, ctx.log);
  });
  app.notFound((c) => c.json(errorBody('not_found', `no route for ${c.req.method} ${c.req.path}`), 404));

  app.get('/healthz', async (c) => {
    try {
      await pingStore(ctx.db);
      return c.json({ status: 'ok', version: ctx.version, store: ctx.db.kind, checks: { store: 'up' } });
    } catch (err) {
      c.header('Retry-After', '2');
      const why = storeError(err);
      return c.json({ status: 'unavailable', version: ctx.version, store: ctx.db.kind, checks: { store: 'down' }, message: why instanceof StoreUnavailableError ? why.message : 'the store (database) is unavailable' }, 503);
    }
  });

  app.get('/metrics', async (c) => {
    await refreshGauges(ctx);
    return c.text(await ctx.metrics.registry.metrics(), 200, { 'content-type': ctx.metrics.registry.contentType });
  });

  const api = new Hono<Env>();
  api.use('*', async (c, next) => (c.req.path.startsWith('/api/v1/artifacts') ? next() : bodyLimit(ctx.config.limits.maxBodyBytes)(c, next)));
  api.route('/runners', runnerProtocolRouter(ctx, auth)); // register (own auth), then runner-authenticated calls
  api.use('*', auth.middleware());
  api.route('/runners', runnersRouter(ctx));
  api.route('/jobs', runnerJobRouter(ctx));
  api.route('/jobs', jobsRouter(ctx));
  api.route('/pools', poolsRouter(ctx));
  api.route('/tokens', tokensRouter(ctx, auth));
  api.route('/events', eventsRouter(ctx));
  api.route('/artifacts', artifactsRouter(ctx));
  api.route('/stats', statsRouter(ctx));
  api.route('/stream', streamRouter(ctx));
  api.get('/class-sizes', (c) => {
    requireAdmin(c.var.principal);
    return c.json({ classSizes: Object.entries(ctx.classSizes).map(([name, s]) => ({ name, ...s })) });
  });
  app.route('/webhooks', githubWebhookRouter(ctx, services.github)); // signed by GitHub, not bearer-token auth
  app.route('/api/v1', api);
  app.route('/', webRouter());
  return { app, auth };
}

async function refreshGauges(ctx: AppContext) {
  const [jobs, runners] = await Promise.all([activeJobCounts(ctx.db), liveRunnerCounts(ctx.db)]);
  ctx.metrics.jobsQueued.reset();
  for (const r of jobs) ctx.metrics.jobsQueued.set({ pool: r.pool, state: r.state }, r.n);
  ctx.metrics.runners.reset();
  for (const r of runners) ctx.metrics.runners.set({ pool: r.pool, state: r.state }, r.n);
}
