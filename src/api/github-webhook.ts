import { Hono } from 'hono';
import type { AppContext } from '../app/context.js';
import { bodyLimit, errorBody } from './http.js';
import { clientAddress } from './auth.js';
import { GithubApiError } from '../github/client.js';
import { githubSettings } from '../github/settings.js';
import type { GithubSource } from '../github/service.js';
import { verifySignature } from '../github/signature.js';
import { parseWorkflowJob } from '../github/webhook-payload.js';

/** GitHub's own cap on webhook payloads is 25 MB; workflow_job payloads are a few KB. */
const MAX_WEBHOOK_BYTES = 1_048_576;
/** GitHub waits 10 s for a webhook response: wait at most this long for a rate limit here (reconcile catches up later). */
const WEBHOOK_RATE_LIMIT_WAIT_MS = 5_000;

/**
 * `POST /webhooks/github` — outside bearer-token auth; authenticated by the HMAC signature.
 * Mount: `app.route('/webhooks', githubWebhookRouter(ctx, source))`. Verification and the mapping
 * to jobs are in src/github/.
 */
export function githubWebhookRouter(ctx: AppContext, source: GithubSource) {
  const app = new Hono();

  // A signed delivery refused as invalid is recorded too (a 422 for no pool records itself), under
  // its own subject: a redelivery must not look like a duplicate of a refused one.
  app.use('/github', async (c, next) => {
    await next();
    if (c.res.status !== 400 || !c.req.header('x-hub-signature-256')) return;
    const reason = ((await c.res.clone().json().catch(() => undefined)) as { error?: { message?: string } } | undefined)?.error?.message ?? 'invalid webhook';
    await source.record(`refused:${(c.req.header('x-github-delivery') ?? '-').slice(0, 100)}`, `webhook refused (400): ${reason}`);
  });

  app.post('/github', bodyLimit(Math.min(ctx.config.limits.maxBodyBytes, MAX_WEBHOOK_BYTES)), async (c) => {
    const settings = githubSettings(ctx.config);
    if (!settings?.webhookSecret) return c.json(errorBody('unavailable', 'GitHub webhooks are not configured: set github.webhookSecret'), 503);
    const body = new Uint8Array(await c.req.arrayBuffer());
    const delivery = (c.req.header('x-github-delivery') ?? '').slice(0, 100);
    const event = c.req.header('x-github-event') ?? '';
    if (!verifySignature(settings.webhookSecret, body, c.req.header('x-hub-signature-256'))) {
      const reason = c.req.header('x-hub-signature-256') ? 'bad X-Hub-Signature-256 on GitHub webhook' : 'missing X-Hub-Signature-256 on GitHub webhook';
      await ctx.audit.record({ kind: 'auth', source: clientAddress(c), method: 'POST', path: '/webhooks/github', reason, actor: 'anonymous', detail: `delivery ${delivery || '-'}, event ${event.slice(0, 50) || '-'}` });
      ctx.log.warn({ delivery, event }, reason);
      return c.json(errorBody('unauthorized', reason), 401);
    }
    if (event === 'ping') return c.json({ ok: true, event }, 200);
    if (event !== 'workflow_job') return c.json({ ignored: true, reason: `event ${event || '(none)'} is not handled` }, 202);

    let payload: any;
    try {
      payload = JSON.parse(Buffer.from(body).toString('utf8'));
    } catch {
      return c.json(errorBody('invalid', 'body is not JSON', 'body'), 400);
    }
    const wj = payload?.workflow_job;
    if (!wj || !Number.isSafeInteger(wj.id) || typeof payload?.repository?.full_name !== 'string' || !Array.isArray(wj.labels))
      return c.json(errorBody('invalid', 'workflow_job payload needs workflow_job.id, workflow_job.labels and repository.full_name', 'workflow_job'), 400);
    const action = String(payload.action ?? '');
    if (!['queued', 'in_progress', 'completed'].includes(action)) return c.json({ ignored: true, reason: `action ${action} is not handled` }, 202);
    const checked = parseWorkflowJob(payload);
    if (!('info' in checked)) {
      const { field } = checked;
      const reason = `refused workflow_job ${wj.id}: ${field}: ${checked.message}`;
      ctx.log.warn({ delivery, field }, 'GitHub webhook refused');
      await source.record(`delivery:${delivery || '-'}`, reason, { field, outcome: 'refused' });
      return c.json(errorBody('unprocessable', reason, field), 422);
    }
    const { info } = checked;
    if (delivery && !(await source.takeDelivery(delivery))) return c.json({ duplicate: true, delivery }, 200);
    const done = (outcome: string) => source.deliveryDone(delivery, `${action} workflow_job ${wj.id}: ${outcome}`);
    try {
      if (action === 'queued') {
        const out = await source.queued(info, { maxWaitMs: WEBHOOK_RATE_LIMIT_WAIT_MS });
        if (out.status === 'unroutable') return c.json(errorBody('unprocessable', out.reason, 'workflow_job.labels'), 422);
        await done(out.status);
        if (out.status === 'ignored') return c.json({ ignored: true, reason: out.reason }, 202);
        return c.json({ job: { id: out.job.id, pool: out.job.pool, state: out.job.state }, created: out.status === 'created' }, out.status === 'created' ? 201 : 200);
      }
      if (action === 'in_progress') {
        const jobId = await source.inProgress(info);
        await done(jobId ? `runner ${info.runnerName} is runyard job ${jobId}` : 'not a runyard runner');
        return c.json({ job: jobId }, 200);
      }
      const { cancelled } = await source.completed(info);
      await done(cancelled ? `cancelled job ${cancelled}` : 'noted');
      return c.json({ cancelled }, 200);
    } catch (err) {
      if (!(err instanceof GithubApiError)) throw err;
      const reason = `GitHub API error handling ${action} workflow_job ${wj.id}: ${err.message}; reconcile retries it`;
      ctx.log.warn({ err, delivery }, reason);
      await source.record(`workflow_job:${wj.id}`, reason, { status: err.status, rateLimited: err.rateLimited });
      return c.json(errorBody(err.rateLimited ? 'rate_limited' : 'bad_gateway', reason), err.rateLimited ? 503 : 502);
    } finally {
      source.releaseDelivery(delivery);
    }
  });
  return app;
}
