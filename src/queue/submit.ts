/* Submit: queued jobs and their audit events, inserted in one statement. */
import type { Queryable } from '../store/db.js';
import { toJob, type Job, type JobSpec } from './job.js';

/**
 * Inserts jobs in one statement. A spec whose idempotency key was seen before returns the
 * existing job instead (created: false). Results are in the order of the specs.
 */
export async function enqueue(q: Queryable, now: number, specs: JobSpec[], actor = 'api'): Promise<{ job: Job; created: boolean }[]> {
  if (specs.length === 0) return [];
  const rows = specs.map((s, i) => ({
    ord: i,
    pool: s.pool,
    commands: s.commands,
    payload: s.payload ?? null,
    env: s.env ?? {},
    secrets_enc: s.secretsEnc ?? null,
    secret_names: s.secretNames ?? [],
    labels: s.labels ?? [],
    image: s.image ?? null,
    source: s.source ?? 'api',
    external_id: s.externalId ?? null,
    idempotency_key: s.idempotencyKey ?? null,
    max_attempts: s.maxAttempts ?? 3,
    retry_on_failure: s.retryOnFailure ?? false,
    timeout_ms: s.timeoutMs,
  }));
  const inserted = await q.query(
    `with ins as (
       insert into jobs (pool, state, commands, payload, env, secrets_enc, secret_names, labels, image, source, external_id,
                         idempotency_key, max_attempts, retry_on_failure, timeout_ms, created_at, queued_at)
       select x.pool, 'queued', x.commands, x.payload, x.env, x.secrets_enc, x.secret_names, x.labels, x.image, x.source, x.external_id,
              x.idempotency_key, x.max_attempts, x.retry_on_failure, x.timeout_ms, $1, $1
       from jsonb_to_recordset($2::jsonb) as x(ord int, pool text, commands jsonb, payload jsonb, env jsonb, secrets_enc text,
              secret_names jsonb, labels jsonb, image text, source text, external_id text, idempotency_key text,
              max_attempts int, retry_on_failure boolean, timeout_ms bigint)
       order by x.ord
       on conflict (idempotency_key) where idempotency_key is not null do nothing
       returning *
     ), ev as (
       insert into events (at, kind, subject, to_state, reason, actor)
       select $1, 'job', id::text, 'queued', 'submitted', $3 from ins
     )
     select * from ins order by id`,
    [new Date(now), JSON.stringify(rows), actor],
  );
  const byKey = new Map<string, Job>();
  const unkeyed: Job[] = [];
  for (const r of inserted) {
    const job = toJob(r);
    if (job.idempotencyKey) byKey.set(job.idempotencyKey, job);
    else unkeyed.push(job);
  }
  const missingKeys = specs.map((s) => s.idempotencyKey).filter((k): k is string => !!k && !byKey.has(k));
  const existing = new Map<string, Job>();
  if (missingKeys.length > 0) {
    for (const r of await q.query('select * from jobs where idempotency_key = any($1::text[])', [missingKeys])) existing.set(r.idempotency_key, toJob(r));
  }
  let u = 0;
  return specs.map((s) => {
    if (!s.idempotencyKey) return { job: unkeyed[u++]!, created: true };
    const fresh = byKey.get(s.idempotencyKey);
    if (fresh) {
      byKey.delete(s.idempotencyKey); // a key repeated inside one batch: later ones get the same job
      existing.set(s.idempotencyKey, fresh);
      return { job: fresh, created: true };
    }
    return { job: existing.get(s.idempotencyKey)!, created: false };
  });
}
