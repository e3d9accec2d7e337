/*
 * Test-data builders for the queue and store: jobs, runners and fences with named options.
 * They call the same functions the server does, with an explicit `now`.
 */
import { randomUUID } from 'node:crypto';
import type { Db, Queryable } from '../../src/store/db.js';
import { claimJobs } from '../../src/queue/claim.js';
import { enqueue } from '../../src/queue/submit.js';
import type { ClaimedJob, Fence, Job, JobSpec } from '../../src/queue/job.js';
import type { Runner } from '../../src/store/queries/runners.js';
import { registerRunner } from '../../src/store/queries/runner-transitions.js';
import { listEvents, type EventRow } from '../../src/store/queries/events.js';

let poolSeq = 0;
/** A pool name no other test in the process uses, so tests can share one store. */
export const uniquePool = (hint = 'p') => `${hint}-${process.pid}-${++poolSeq}`;

export function jobSpec(o: Partial<JobSpec> & { pool: string }): JobSpec {
  return { commands: ['echo hi'], timeoutMs: 3_600_000, ...o };
}

export async function submit(db: Queryable, now: number, o: Partial<JobSpec> & { pool: string; count?: number }): Promise<Job[]> {
  const { count = 1, ...spec } = o;
  const results = await enqueue(db, now, Array.from({ length: count }, () => jobSpec(spec)));
  return results.map((r) => r.job);
}

/** Claims up to `max` jobs of `pool` for `runnerId` in one transaction, as the server does. */
export function claim(db: Db, now: number, runnerId: string, pool: string, max = 1): Promise<ClaimedJob[]> {
  return db.transaction((tx) => claimJobs(tx, now, runnerId, pool, max));
}

export const fenceOf = (job: Pick<Job, 'id' | 'runnerId' | 'attempt'>): Fence => ({ jobId: job.id, runnerId: job.runnerId!, attempt: job.attempt });

/** A registered runner row (as after POST /runners/register) whose last heartbeat is `now`. */
export async function registerTestRunner(db: Queryable, now: number, o: { pool: string; id?: string; slots?: number }): Promise<Runner> {
  const { runner } = await registerRunner(db, now, {
    id: o.id ?? randomUUID(),
    pool: o.pool,
    name: 'test-runner',
    version: 'test',
    publicKey: 'unused',
    labels: [],
    slots: o.slots ?? 4,
    configHash: 'test',
    ephemeral: false,
  });
  return runner;
}

export async function jobEvents(db: Queryable, jobId: number): Promise<EventRow[]> {
  return listEvents(db, { kind: 'job', subject: String(jobId), after: 0, limit: 1000 });
}

/** "from->to: reason" lines of a job's timeline, oldest first. */
export async function timeline(db: Queryable, jobId: number): Promise<string[]> {
  return (await jobEvents(db, jobId)).map((e) => `${e.fromState ?? '-'}->${e.toState ?? '-'}: ${e.reason}`);
}

export async function count(db: Queryable, sql: string, params: unknown[] = []): Promise<number> {
  const [row] = await db.query<{ n: number }>(`select count(*)::int as n from (${sql}) x`, params);
  return row!.n;
}
