/*
 * The queue's semantics, the same suite on real PostgreSQL and on PGlite: claims are exclusive
 * under concurrency, reports are fenced, submits are idempotent, cancel/timeout/requeue/stuck/
 * offline take the documented paths, and every transition is in the events with its reason.
 * Time is always passed in (`now` / ManualClock); nothing sleeps.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { openTestDb, STORES } from './helpers/db.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { claim, count, fenceOf, jobSpec, registerTestRunner, submit, timeline, uniquePool } from './helpers/queue.js';
import { openPostgres, type Db } from '../src/store/db.js';
import { appendLogs, completeJob, completeJobs, markRunning } from '../src/queue/report.js';
import { cancelJob } from '../src/queue/cancel.js';
import { claimForRunner, claimJobs } from '../src/queue/claim.js';
import { enqueue } from '../src/queue/submit.js';
import { expireTimedOutJobs, findStuckJobs, recoverJobs } from '../src/queue/recover.js';
import { getJob, readLogs } from '../src/queue/read.js';
import type { LogLine } from '../src/queue/job.js';
import { flushHeartbeats, getRunner } from '../src/store/queries/runners.js';
import { recover } from '../src/scheduler/maintenance.js';
import { ManualClock } from '../src/lib/clock.js';
import { ConflictError, NotFoundError } from '../src/lib/errors.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const line = (m: string, t = T0): LogLine => ({ t, s: 'o', m });
const logText = async (db: Db, jobId: number) => (await readLogs(db, jobId, 0)).flatMap((b) => b.lines.map((l) => l.m));

for (const store of STORES) {
  describe(`queue on ${store}`, () => {
    // One store for this block: every test works in its own pool and asserts on its own job ids.
    let db: Db;
    let url: string;
    let close: () => Promise<void>;
    before(async () => {
      ({ db, url, close } = await openTestDb(store));
    });
    after(() => close());

    test('16 concurrent claimers share 3,000 jobs: each claimed exactly once, none lost', async () => {
      const pool = uniquePool('claim');
      const JOBS = 3000;
      const CLAIMERS = 16;
      await enqueue(db, T0, Array.from({ length: JOBS }, (_, i) => jobSpec({ pool, commands: [`echo ${i}`] })));
      // Enough connections for every claimer to hold its own transaction at once.
      const claimDb = store === 'postgres' ? await openPostgres(url, { max: CLAIMERS }) : db;
      try {
        const runners = Array.from({ length: CLAIMERS }, () => randomUUID());
        const started = performance.now();
        let transactions = 0;
        const got = await Promise.all(
          runners.map(async (runnerId, k) => {
            const mine: number[] = [];
            for (;;) {
              const batch = await claim(claimDb, T0 + 1, runnerId, pool, 1 + (k % 8));
              transactions++;
              if (batch.length === 0) return mine;
              for (const j of batch) {
                assert.equal(j.runnerId, runnerId);
                assert.equal(j.state, 'claimed');
                assert.equal(j.attempt, 1);
              }
              mine.push(...batch.map((j) => j.id));
            }
          }),
        );
        const ms = Math.round(performance.now() - started);
        const all = got.flat();
        assert.equal(all.length, JOBS, 'jobs handed out');
        assert.equal(new Set(all).size, JOBS, 'no job handed out twice');
        assert.equal(await count(db, `select 1 from jobs where pool = $1 and state = 'queued'`, [pool]), 0, 'none left queued');
        // The database agrees with what each claimer was told.
        const owner = new Map<number, string>();
        got.forEach((ids, k) => ids.forEach((id) => owner.set(id, runners[k]!)));
        const rows = await db.query<{ id: number; runner_id: string; attempt: number; state: string }>('select id, runner_id, attempt, state from jobs where pool = $1', [pool]);
        assert.equal(rows.length, JOBS);
        for (const r of rows) {
          assert.equal(r.state, 'claimed');
          assert.equal(r.attempt, 1);
          assert.equal(r.runner_id, owner.get(r.id), `job ${r.id} owner`);
        }
        assert.equal(
          await count(db, `select 1 from events e join jobs j on e.subject = j.id::text where e.kind = 'job' and j.pool = $1 and e.to_state = 'claimed'`, [pool]),
          JOBS,
          'one claimed event per job',
        );
        const busy = got.filter((ids) => ids.length > 0).length;
        if (store === 'postgres') assert.ok(busy >= 2, `claims spread over several claimers (${busy})`);
        console.log(`# ${store}: ${JOBS} jobs, ${CLAIMERS} claimers, ${transactions} claim transactions, ${busy} claimers got work, ${ms} ms; per claimer: ${got.map((g) => g.length).join(',')}`);
      } finally {
        if (claimDb !== db) await claimDb.close();
      }
    });

    if (store === 'postgres') {
      test('a claimer skips rows another open claim transaction holds, without waiting for it', async () => {
        const pool = uniquePool('skip');
        await submit(db, T0, { pool, count: 10 });
        let release!: () => void;
        const held = new Promise<void>((r) => (release = r));
        let claimedByA!: (ids: number[]) => void;
        const aIds = new Promise<number[]>((r) => (claimedByA = r));
        const a = db.transaction(async (tx) => {
          claimedByA((await claimJobs(tx, T0, randomUUID(), pool, 5)).map((j) => j.id));
          await held; // keep A's row locks while B claims
        });
        try {
          const idsA = await aIds;
          let timer: NodeJS.Timeout | undefined;
          const b = await Promise.race([
            claim(db, T0, randomUUID(), pool, 10),
            new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error("claim B blocked on A's locks")), 5000))),
          ]).finally(() => clearTimeout(timer));
          assert.equal(idsA.length, 5);
          assert.equal(b.length, 5, 'B gets the five rows A does not hold');
          assert.deepEqual(b.map((j) => j.id).filter((id) => idsA.includes(id)), []);
        } finally {
          release();
          await a;
        }
      });
    }

    test('fencing: a runner that lost its claim is refused; the new holder is not', async () => {
      const pool = uniquePool('fence');
      const [job] = await submit(db, T0, { pool });
      const [a] = await claim(db, T0, randomUUID(), pool);
      assert.equal(a!.id, job!.id);
      await markRunning(db, T0 + 1, fenceOf(a!));
      await appendLogs(db, T0 + 2, fenceOf(a!), 1, [line('A: before it was lost')]);
      await appendLogs(db, T0 + 2, fenceOf(a!), 2, [line('A: second batch')]);

      // Runner A is lost: the job goes back to the queue and runner B claims it.
      const moved = await db.transaction((tx) => recoverJobs(tx, T0 + 3, [job!.id], 'runner went offline'));
      assert.deepEqual(moved, [{ id: job!.id, from: 'running', to: 'queued' }]);
      const [b] = await claim(db, T0 + 4, randomUUID(), pool);
      assert.equal(b!.id, job!.id);
      assert.equal(b!.attempt, 2);

      await assert.rejects(appendLogs(db, T0 + 5, fenceOf(a!), 3, [line('A: late')]), ConflictError);
      await assert.rejects(markRunning(db, T0 + 5, fenceOf(a!)), ConflictError);
      await assert.rejects(db.transaction((tx) => completeJob(tx, T0 + 5, fenceOf(a!), { exitCode: 0 })), ConflictError);
      // Right runner, wrong attempt; right attempt, wrong runner: both refused.
      await assert.rejects(markRunning(db, T0 + 5, { ...fenceOf(b!), attempt: 1 }), ConflictError);
      await assert.rejects(markRunning(db, T0 + 5, { ...fenceOf(b!), runnerId: a!.runnerId! }), ConflictError);
      assert.equal((await getJob(db, job!.id)).state, 'claimed', 'refused reports changed nothing');

      assert.equal((await markRunning(db, T0 + 6, fenceOf(b!))).state, 'running');
      // B numbers its batches from 1 again, as a fresh agent does; they must not be mistaken for A's.
      await appendLogs(db, T0 + 7, fenceOf(b!), 1, [line('B: first')]);
      await appendLogs(db, T0 + 7, fenceOf(b!), 1, [line('B: first')]); // a retried batch is stored once
      await appendLogs(db, T0 + 8, fenceOf(b!), 2, [line('B: second')]);
      const done = await db.transaction((tx) => completeJob(tx, T0 + 9, fenceOf(b!), { exitCode: 0, output: { ok: true } }));
      assert.equal(done.state, 'succeeded');
      assert.deepEqual(done.output, { ok: true });
      assert.deepEqual(await logText(db, job!.id), ['A: before it was lost', 'A: second batch', 'B: first', 'B: second']);
      // Once finished, nobody may report any more, not even the holder.
      await assert.rejects(appendLogs(db, T0 + 10, fenceOf(b!), 3, [line('B: after the end')]), ConflictError);
      await assert.rejects(db.transaction((tx) => completeJob(tx, T0 + 10, fenceOf(b!), { exitCode: 1 })), ConflictError);
      await assert.rejects(markRunning(db, T0 + 10, { jobId: 999_999_999, runnerId: randomUUID(), attempt: 1 }), NotFoundError);
      assert.deepEqual(await timeline(db, job!.id), [
        '-->queued: submitted',
        'queued->claimed: claimed by runner',
        'claimed->running: process started',
        'running->queued: runner went offline (attempt 1 of 3)',
        'queued->claimed: claimed by runner',
        'claimed->running: process started',
        'running->succeeded: exit code 0',
      ]);
    });

    test('idempotent submit: the same key gives the same job, separately, in one batch and concurrently', async () => {
      const pool = uniquePool('idem');
      const key = `key-${pool}`;
      const [first] = await enqueue(db, T0, [jobSpec({ pool, idempotencyKey: key })]);
      const [second] = await enqueue(db, T0 + 1, [jobSpec({ pool, idempotencyKey: key, commands: ['something else'] })]);
      assert.equal(first!.created, true);
      assert.equal(second!.created, false);
      assert.equal(second!.job.id, first!.job.id);
      assert.deepEqual(second!.job.commands, ['echo hi'], 'the first submission wins');

      const key2 = `key2-${pool}`;
      const batch = await enqueue(db, T0 + 2, [
        jobSpec({ pool, idempotencyKey: key2 }),
        jobSpec({ pool }),
        jobSpec({ pool, idempotencyKey: key2 }),
        jobSpec({ pool, idempotencyKey: key }),
        jobSpec({ pool }),
      ]);
      assert.deepEqual(batch.map((r) => r.created), [true, true, false, false, true]);
      assert.equal(batch[2]!.job.id, batch[0]!.job.id);
      assert.equal(batch[3]!.job.id, first!.job.id);
      assert.notEqual(batch[1]!.job.id, batch[4]!.job.id);

      const key3 = `key3-${pool}`;
      const racing = await Promise.all(Array.from({ length: 8 }, (_, i) => enqueue(db, T0 + 3, [jobSpec({ pool, idempotencyKey: key3, commands: [`racer ${i}`] })])));
      assert.equal(new Set(racing.map(([r]) => r!.job.id)).size, 1, 'every racer sees the same job');
      assert.equal(racing.filter(([r]) => r!.created).length, 1, 'exactly one racer created it');

      for (const k of [key, key2, key3]) assert.equal(await count(db, 'select 1 from jobs where idempotency_key = $1', [k]), 1, `one row for ${k}`);
      assert.equal(await count(db, 'select 1 from jobs where pool = $1', [pool]), 5);
      assert.equal(
        await count(db, `select 1 from events e join jobs j on e.subject = j.id::text where e.kind = 'job' and j.pool = $1 and e.reason = 'submitted'`, [pool]),
        5,
        'one submitted event per row',
      );
    });

    test('cancel: queued at once; running by request and the runner\'s result; finished refused', async () => {
      const pool = uniquePool('cancel');
      const [queued, running, claimed] = await submit(db, T0, { pool, count: 3 });

      const q = await db.transaction((tx) => cancelJob(tx, T0 + 1, queued!.id, 'admin:test'));
      assert.equal(q.job.state, 'cancelled');
      assert.equal(q.signalRunner, null);
      assert.ok(q.job.finishedAt);
      assert.deepEqual(await timeline(db, queued!.id), ['-->queued: submitted', 'queued->cancelled: cancelled by operator']);
      assert.deepEqual((await claim(db, T0 + 2, randomUUID(), pool, 10)).map((j) => j.id), [running!.id, claimed!.id], 'a cancelled job is never claimed');

      const r = await getJob(db, running!.id);
      await markRunning(db, T0 + 3, fenceOf(r));
      const c = await db.transaction((tx) => cancelJob(tx, T0 + 4, r.id, 'admin:test'));
      assert.equal(c.job.state, 'running', 'a running job keeps running until its runner stops it');
      assert.equal(c.job.cancelRequested, true);
      assert.equal(c.signalRunner, r.runnerId);
      assert.deepEqual(await appendLogs(db, T0 + 5, fenceOf(r), 1, [line('still going')]), { cancelRequested: true });
      // The runner killed the process: whatever exit code it reports, the job is cancelled.
      const done = await db.transaction((tx) => completeJob(tx, T0 + 6, fenceOf(r), { exitCode: 143 }));
      assert.equal(done.state, 'cancelled');
      assert.equal(done.exitCode, 143);
      assert.deepEqual(await timeline(db, r.id), [
        '-->queued: submitted',
        'queued->claimed: claimed by runner',
        'claimed->running: process started',
        'running->running: cancel requested',
        'running->cancelled: cancelled',
      ]);

      // A claimed job whose runner then vanishes is cancelled, not requeued.
      await db.transaction((tx) => cancelJob(tx, T0 + 7, claimed!.id, 'admin:test'));
      assert.deepEqual(await db.transaction((tx) => recoverJobs(tx, T0 + 8, [claimed!.id], 'runner went offline')), [{ id: claimed!.id, from: 'claimed', to: 'cancelled' }]);

      for (const id of [queued!.id, running!.id, claimed!.id]) await assert.rejects(db.transaction((tx) => cancelJob(tx, T0 + 9, id, 'admin:test')), ConflictError);
      await assert.rejects(db.transaction((tx) => cancelJob(tx, T0 + 9, 999_999_999, 'admin:test')), NotFoundError);
    });

    test('timeout: expired only past timeout + grace, then late results are refused', async () => {
      const pool = uniquePool('timeout');
      const TIMEOUT = 60_000;
      const GRACE = 30_000;
      const [running, claimedOnly] = await submit(db, T0, { pool, count: 2, timeoutMs: TIMEOUT });
      const [r, c] = await claim(db, T0, randomUUID(), pool, 2);
      await markRunning(db, T0 + 10_000, fenceOf(r!)); // the clock starts when the process starts

      const mine = async (now: number) => (await expireTimedOutJobs(db, now, GRACE)).filter((j) => j.id === running!.id || j.id === claimedOnly!.id);
      assert.deepEqual(await mine(T0 + TIMEOUT + GRACE), [], 'claimed job exactly at its limit');
      assert.deepEqual(await mine(T0 + TIMEOUT + GRACE + 1), [{ id: claimedOnly!.id, runnerId: c!.runnerId }]);
      assert.equal((await getJob(db, running!.id)).state, 'running');
      assert.deepEqual(await mine(T0 + 10_000 + TIMEOUT + GRACE), []);
      assert.deepEqual(await mine(T0 + 10_000 + TIMEOUT + GRACE + 1), [{ id: running!.id, runnerId: r!.runnerId }]);

      const job = await getJob(db, running!.id);
      assert.equal(job.state, 'timed_out');
      assert.match(job.error!, /exceeded timeout of 60000ms/);
      assert.ok(job.finishedAt);
      await assert.rejects(db.transaction((tx) => completeJob(tx, T0 + 200_000, fenceOf(r!), { exitCode: 0 })), ConflictError);
      assert.deepEqual((await timeline(db, running!.id)).slice(-1), ['running->timed_out: timeout enforced by server']);
      assert.deepEqual((await timeline(db, claimedOnly!.id)).slice(-1), ['claimed->timed_out: timeout enforced by server']);

      // A runner that enforced the timeout itself reports it.
      const [own] = await submit(db, T0, { pool, timeoutMs: TIMEOUT });
      const [o] = await claim(db, T0, randomUUID(), pool);
      const done = await db.transaction((tx) => completeJob(tx, T0 + TIMEOUT, fenceOf(o!), { exitCode: null, outcome: 'timed_out' }));
      assert.equal(done.state, 'timed_out');
      assert.equal(done.id, own!.id);
    });

    test('requeue: lost runners retry while attempts remain, then fail with the reason', async () => {
      const pool = uniquePool('requeue');
      const [job] = await submit(db, T0, { pool, maxAttempts: 2, secretsEnc: 'encrypted-box' });
      const secretsOf = async () => (await db.query('select secrets_enc from jobs where id = $1', [job!.id]))[0]!.secrets_enc;
      const [a] = await claim(db, T0, randomUUID(), pool);
      assert.deepEqual(await db.transaction((tx) => recoverJobs(tx, T0 + 1, [a!.id], 'runner went offline')), [{ id: job!.id, from: 'claimed', to: 'queued' }]);
      const requeued = await getJob(db, job!.id);
      assert.equal(requeued.runnerId, null);
      assert.equal(requeued.queuedAt.getTime(), T0 + 1);
      assert.equal(await secretsOf(), 'encrypted-box', 'kept for the next attempt');
      const [b] = await claim(db, T0 + 2, randomUUID(), pool);
      assert.equal(b!.attempt, 2);
      await markRunning(db, T0 + 3, fenceOf(b!));
      assert.deepEqual(await db.transaction((tx) => recoverJobs(tx, T0 + 4, [b!.id], 'runner went offline')), [{ id: job!.id, from: 'running', to: 'failed' }]);
      const failed = await getJob(db, job!.id);
      assert.equal(failed.state, 'failed');
      assert.equal(failed.error, 'runner went offline (attempt 2 of 2)');
      assert.equal(failed.finishedAt?.getTime(), T0 + 4);
      assert.equal(await secretsOf(), null, 'dropped once the job is finished, as on every other final path');
      assert.deepEqual(await claim(db, T0 + 5, randomUUID(), pool), [], 'a failed job is not claimed again');
      assert.deepEqual(await db.transaction((tx) => recoverJobs(tx, T0 + 5, [job!.id], 'again')), [], 'recovery ignores finished jobs');
      assert.deepEqual((await timeline(db, job!.id)).filter((l) => l.includes('offline')), [
        'claimed->queued: runner went offline (attempt 1 of 2)',
        'running->failed: runner went offline (attempt 2 of 2)',
      ]);
    });

    test('requeue: a non-zero exit fails at once unless retryOnFailure, which retries up to maxAttempts', async () => {
      const pool = uniquePool('exit');
      const [plain] = await submit(db, T0, { pool });
      const [p] = await claim(db, T0, randomUUID(), pool);
      await markRunning(db, T0 + 1, fenceOf(p!));
      const failed = await db.transaction((tx) => completeJob(tx, T0 + 2, fenceOf(p!), { exitCode: 2 }));
      assert.equal(failed.id, plain!.id);
      assert.equal(failed.state, 'failed');
      assert.equal(failed.attempt, 1);
      assert.equal(failed.exitCode, 2);
      assert.equal(failed.error, 'exit code 2');

      const [retried] = await submit(db, T0, { pool, retryOnFailure: true, maxAttempts: 2 });
      const [r1] = await claim(db, T0, randomUUID(), pool);
      const again = await db.transaction((tx) => completeJob(tx, T0 + 1, fenceOf(r1!), { exitCode: 1 }));
      assert.equal(again.state, 'queued');
      assert.equal(again.runnerId, null);
      const [r2] = await claim(db, T0 + 2, randomUUID(), pool);
      assert.equal(r2!.id, retried!.id);
      assert.equal(r2!.attempt, 2);
      const last = await db.transaction((tx) => completeJob(tx, T0 + 3, fenceOf(r2!), { exitCode: 1, error: 'tests failed' }));
      assert.equal(last.state, 'failed');
      assert.equal(last.error, 'tests failed');
      assert.deepEqual((await timeline(db, retried!.id)).filter((l) => !l.includes('claimed by runner')), [
        '-->queued: submitted',
        'claimed->queued: retry after exit code 1 (attempt 1 of 2)',
        'claimed->failed: tests failed',
      ]);

      const [ok] = await submit(db, T0, { pool, retryOnFailure: true });
      const [o] = await claim(db, T0, randomUUID(), pool);
      assert.equal((await db.transaction((tx) => completeJob(tx, T0 + 1, fenceOf(o!), { exitCode: 0 }))).state, 'succeeded');
      assert.equal((await getJob(db, ok!.id)).attempt, 1);
    });

    test('stuck: no log activity and no runner heartbeat for stuckAfter, and only then', async () => {
      const pool = uniquePool('stuck');
      const STUCK = 300_000;
      const [quiet, logging, beating] = await submit(db, T0, { pool, count: 3 });
      const fences = [];
      for (const id of [quiet!.id, logging!.id, beating!.id]) {
        const runner = await registerTestRunner(db, T0, { pool });
        const [j] = await claim(db, T0, runner.id, pool);
        assert.equal(j!.id, id);
        await markRunning(db, T0, fenceOf(j!));
        fences.push(fenceOf(j!));
      }
      await appendLogs(db, T0 + STUCK - 1, fences[1]!, 1, [line('still here')]);
      await flushHeartbeats(db, [{ id: fences[2]!.runnerId, at: T0 + STUCK - 1, version: 'test' }]);

      const ours = new Set([quiet!.id, logging!.id, beating!.id]);
      const stuckAt = async (now: number) => (await findStuckJobs(db, now - STUCK)).filter((id) => ours.has(id)).sort();
      assert.deepEqual(await stuckAt(T0 + STUCK), [], 'not before stuckAfter');
      assert.deepEqual(await stuckAt(T0 + STUCK + 1), [quiet!.id]);
      assert.deepEqual(await stuckAt(T0 + 2 * STUCK), [quiet!.id, logging!.id, beating!.id].sort());
    });

    test('finished jobs leave the hot path: the claim index covers queued rows only', async () => {
      const [idx] = await db.query<{ pred: string }>(`select pg_get_expr(indpred, indrelid) as pred from pg_index where indexrelid = 'jobs_queued'::regclass`);
      assert.match(idx!.pred, /state = 'queued'/);

      const pool = uniquePool('hot');
      await enqueue(db, T0, Array.from({ length: 1000 }, () => jobSpec({ pool })));
      const claimed = await claim(db, T0, randomUUID(), pool, 1000);
      for (const j of claimed.slice(0, 400)) await db.transaction((tx) => completeJob(tx, T0 + 1, fenceOf(j), { exitCode: 0 }));
      await db.transaction((tx) => recoverJobs(tx, T0 + 2, claimed.slice(400).map((j) => j.id), 'gone'));
      assert.equal((await claim(db, T0 + 3, randomUUID(), pool, 595)).length, 595); // 5 left queued
      await db.exec('analyze jobs');
      const plan = async (sql: string) =>
        db.transaction(async (tx) => {
          await tx.query('set local enable_seqscan = off');
          return (await tx.query<{ 'QUERY PLAN': string }>(`explain ${sql}`)).map((r) => r['QUERY PLAN']).join('\n');
        });
      const claimPlan = await plan(`select id from jobs where state = 'queued' and pool = '${pool}' order by id limit 10 for update skip locked`);
      assert.match(claimPlan, /jobs_queued/, claimPlan);
      const finishedPlan = await plan(`select id from jobs where state = 'succeeded' and pool = '${pool}'`);
      assert.doesNotMatch(finishedPlan, /jobs_queued/, 'the queued index cannot answer for finished rows');
      // Counting through the index (its predicate) sees only the 5 queued rows of this pool.
      const [n] = await db.transaction(async (tx) => {
        await tx.query('set local enable_seqscan = off');
        await tx.query('set local enable_bitmapscan = off');
        return tx.query<{ n: number }>(`select count(*)::int as n from jobs where state = 'queued' and pool = $1`, [pool]);
      });
      assert.equal(n!.n, 5);
    });

    test('completeJobs: one statement for a batch, each result fenced and answered as completeJob would', async () => {
      const pool = uniquePool('batch');
      const [good, stale, retried, cancelled, timedOut, failed] = await submit(db, T0, { pool, count: 6 });
      await db.query('update jobs set retry_on_failure = true, max_attempts = 2 where id = $1', [retried!.id]);
      const runner = randomUUID();
      const claimed = await claim(db, T0 + 1, runner, pool, 6);
      assert.deepEqual(claimed.map((j) => j.id), [good, stale, retried, cancelled, timedOut, failed].map((j) => j!.id));
      const f = new Map(claimed.map((j) => [j.id, fenceOf(j)]));
      await markRunning(db, T0 + 2, f.get(good!.id)!);
      await db.transaction((tx) => cancelJob(tx, T0 + 2, cancelled!.id, 'operator'));

      const out = await db.transaction((tx) =>
        completeJobs(tx, T0 + 3, [
          { fence: f.get(good!.id)!, result: { exitCode: 0, output: { n: 1 } } },
          { fence: { ...f.get(stale!.id)!, attempt: 2 }, result: { exitCode: 0 } },
          { fence: f.get(retried!.id)!, result: { exitCode: 1 } },
          { fence: f.get(cancelled!.id)!, result: { exitCode: 143 } },
          { fence: f.get(timedOut!.id)!, result: { exitCode: null, outcome: 'timed_out' } },
          { fence: f.get(failed!.id)!, result: { exitCode: null, error: 'killed' } },
          { fence: f.get(good!.id)!, result: { exitCode: 0 } }, // reported twice: the second is refused
          { fence: { jobId: 999_999_999, runnerId: runner, attempt: 1 }, result: { exitCode: 0 } },
        ]),
      );
      const summary = out.map((o) => ('job' in o ? `${o.job.id}:${o.job.state}` : o.error.constructor.name));
      assert.deepEqual(summary, [
        `${good!.id}:succeeded`,
        'ConflictError',
        `${retried!.id}:queued`,
        `${cancelled!.id}:cancelled`,
        `${timedOut!.id}:timed_out`,
        `${failed!.id}:failed`,
        'ConflictError',
        'NotFoundError',
      ]);
      const done = 'job' in out[0]! ? out[0].job : assert.fail('good result refused');
      assert.deepEqual(done.output, { n: 1 });
      assert.equal(done.exitCode, 0);
      assert.equal(done.error, null);
      assert.equal(done.finishedAt?.getTime(), T0 + 3);
      assert.equal((await getJob(db, stale!.id)).state, 'claimed', 'a refused result changes nothing');
      assert.equal((await getJob(db, failed!.id)).error, 'killed');
      assert.equal((await getJob(db, timedOut!.id)).error, 'exceeded timeout of 3600000ms');
      const secrets = await db.query(`select count(*)::int as n from jobs where id = any($1::bigint[]) and secrets_enc is not null`, [[good!.id, cancelled!.id, timedOut!.id, failed!.id]]);
      assert.equal(secrets[0]!.n, 0);
      const last = async (id: number) => (await timeline(db, id)).at(-1);
      assert.equal(await last(good!.id), 'running->succeeded: exit code 0');
      assert.equal(await last(retried!.id), 'claimed->queued: retry after exit code 1 (attempt 1 of 2)');
      assert.equal(await last(cancelled!.id), 'claimed->cancelled: cancelled');
      assert.equal(await last(timedOut!.id), 'claimed->timed_out: exceeded timeout of 3600000ms');
      assert.equal(await last(failed!.id), 'claimed->failed: killed');
      const actors = await db.query(`select distinct actor from events where kind = 'job' and subject = $1 and to_state = 'succeeded'`, [String(good!.id)]);
      assert.deepEqual(actors, [{ actor: runner }]);
    });

    test('completeJobs: a stale attempt is refused after the job was recovered and claimed again', async () => {
      const pool = uniquePool('batch-stale');
      const [job, other] = await submit(db, T0, { pool, count: 2 });
      const [a] = await claim(db, T0, randomUUID(), pool);
      await db.transaction((tx) => recoverJobs(tx, T0 + 1, [job!.id], 'runner went offline'));
      const [b, c] = await claim(db, T0 + 2, randomUUID(), pool, 2);
      assert.deepEqual([b!.id, b!.attempt, c!.id], [job!.id, 2, other!.id]);
      const out = await db.transaction((tx) =>
        completeJobs(tx, T0 + 3, [
          { fence: fenceOf(a!), result: { exitCode: 0 } },
          { fence: fenceOf(c!), result: { exitCode: 0 } },
        ]),
      );
      assert.ok('error' in out[0]! && out[0].error instanceof ConflictError);
      assert.ok('job' in out[1]! && out[1].job.state === 'succeeded');
      const now = await getJob(db, job!.id);
      assert.deepEqual([now.state, now.runnerId, now.attempt], ['claimed', b!.runnerId, 2], 'the new holder keeps it');
      const later = await db.transaction((tx) => completeJobs(tx, T0 + 4, [{ fence: fenceOf(b!), result: { exitCode: 0 } }]));
      assert.ok('job' in later[0]! && later[0].job.state === 'succeeded');
    });

    test('claimForRunner: one statement honours state, slots, image lane, config hash and ephemerality', async () => {
      const pool = uniquePool('rclaim');
      await db.query(`insert into pools (name, config, config_hash, created_at, updated_at) values ($1, $2, 'test', $3, $3)`, [pool, { env: { A: 'pool', B: 'pool' } }, new Date(T0)]);
      const runner = await registerTestRunner(db, T0, { pool, slots: 2 });
      await submit(db, T0, { pool, count: 3, env: { B: 'job' } });
      const [imaged] = await submit(db, T0, { pool, image: 'node:22' });

      const first = await claimForRunner(db, T0 + 1, runner.id, 5);
      assert.equal(first.runnerState, 'idle');
      assert.equal(first.publicKey, 'unused');
      assert.equal(first.jobs.length, 2, 'no more than its free slots');
      assert.deepEqual(first.jobs[0]!.env, { A: 'pool', B: 'job' });
      assert.ok(first.jobs.every((j) => j.image === null && j.state === 'claimed' && j.runnerId === runner.id));
      let r = await getRunner(db, runner.id);
      assert.deepEqual([r.state, r.jobsStarted, r.idleSince], ['busy', 2, null]);
      assert.equal((await claimForRunner(db, T0 + 2, runner.id, 5)).jobs.length, 0, 'full');
      await db.transaction((tx) => completeJob(tx, T0 + 3, fenceOf(first.jobs[0]!), { exitCode: 0 }));
      const second = await claimForRunner(db, T0 + 4, runner.id, 5);
      assert.equal(second.jobs.length, 1, 'a freed slot');
      assert.equal(second.jobs[0]!.image, null, 'a runner without an image takes no job with one');
      assert.equal((await getRunner(db, runner.id)).jobsStarted, 3);
      assert.deepEqual((await db.query(`select from_state, to_state, reason from events where kind = 'runner' and subject = $1 order by id`, [runner.id])).slice(-1), [
        { from_state: 'idle', to_state: 'busy', reason: 'running jobs' },
      ]);

      const laned = await registerTestRunner(db, T0, { pool, slots: 4 });
      await db.query(`update runners set image = 'node:22' where id = $1`, [laned.id]);
      assert.deepEqual((await claimForRunner(db, T0 + 5, laned.id, 4)).jobs.map((j) => j.id), [imaged!.id], 'an image runner takes only its image');

      const [rest] = await submit(db, T0, { pool });
      const stale = await registerTestRunner(db, T0, { pool });
      await db.query(`update runners set config_hash = 'h0' where id = $1`, [stale.id]);
      assert.equal((await claimForRunner(db, T0 + 6, stale.id, 1)).jobs.length, 0, 'a runner of an older config claims nothing');
      const eph = await registerTestRunner(db, T0, { pool });
      await db.query(`update runners set ephemeral = true, jobs_started = 1 where id = $1`, [eph.id]);
      assert.equal((await claimForRunner(db, T0 + 6, eph.id, 1)).jobs.length, 0, 'an ephemeral runner takes one job in its life');
      await db.query(`update runners set state = 'draining' where id = $1`, [runner.id]);
      await db.transaction((tx) => completeJob(tx, T0 + 7, fenceOf(second.jobs[0]!), { exitCode: 0 }));
      assert.deepEqual(await claimForRunner(db, T0 + 7, runner.id, 1), { runnerState: 'draining', publicKey: 'unused', jobs: [] });
      await db.query(`update runners set state = 'terminated' where id = $1`, [runner.id]);
      assert.equal((await claimForRunner(db, T0 + 7, runner.id, 1)).runnerState, 'terminated');
      await assert.rejects(claimForRunner(db, T0, randomUUID(), 1), NotFoundError);
      r = await getRunner(db, eph.id);
      assert.equal(r.jobsStarted, 1);
      await db.query(`update runners set ephemeral = true, jobs_started = 0 where id = $1`, [eph.id]);
      assert.deepEqual((await claimForRunner(db, T0 + 8, eph.id, 3)).jobs.map((j) => j.id), [rest!.id]);
    });

    if (store === 'postgres') {
      test('claimForRunner: concurrent claims of one runner never exceed its slots', async () => {
        const pool = uniquePool('rclaim-race');
        await db.query(`insert into pools (name, config, config_hash, created_at, updated_at) values ($1, '{}', 'test', $2, $2)`, [pool, new Date(T0)]);
        await submit(db, T0, { pool, count: 40 });
        const claimDb = await openPostgres(url, { max: 8 });
        try {
          for (let round = 0; round < 5; round++) {
            const runner = await registerTestRunner(db, T0, { pool, slots: 3 });
            const got = await Promise.all(Array.from({ length: 8 }, () => claimForRunner(claimDb, T0 + 1, runner.id, 3)));
            assert.equal(got.reduce((n, g) => n + g.jobs.length, 0), 3, `round ${round}: exactly its 3 slots`);
            assert.equal((await getRunner(db, runner.id)).jobsStarted, 3);
          }
        } finally {
          await claimDb.close();
        }
      });
    }

    test('events: a whole life is recorded, each transition with its reason and actor', async () => {
      const pool = uniquePool('events');
      const [job] = await submit(db, T0, { pool });
      const runner = randomUUID();
      const [j] = await claim(db, T0 + 1, runner, pool);
      await markRunning(db, T0 + 2, fenceOf(j!));
      await db.transaction((tx) => completeJob(tx, T0 + 3, fenceOf(j!), { exitCode: 0 }));
      const events = await db.query<{ at: Date; from_state: string | null; to_state: string; reason: string; actor: string }>(
        `select at, from_state, to_state, reason, actor from events where kind = 'job' and subject = $1 order by id`,
        [String(job!.id)],
      );
      assert.deepEqual(
        events.map((e) => [e.at.getTime() - T0, e.from_state, e.to_state, e.reason, e.actor]),
        [
          [0, null, 'queued', 'submitted', 'api'],
          [1, 'queued', 'claimed', 'claimed by runner', runner],
          [2, 'claimed', 'running', 'process started', runner],
          [3, 'running', 'succeeded', 'exit code 0', runner],
        ],
      );
    });
  });

  describe(`recovery on ${store}: maintenance tick with a ManualClock`, () => {
    // One server for this block, each test in its own pool: offlineAfter (10m) is longer than stuckAfter (5m) so the stuck
    // path can be seen on its own; the offline test then moves past both.
    const clock = new ManualClock(T0);
    let t: TestServer;
    before(async () => {
      // The scheduler runs in each tick too: with no runners to start and a long idle timeout it
      // leaves the test's hand-registered runners alone.
      t = await startTestServer({
        store,
        clock,
        loops: false,
        config: { scheduler: { offlineAfter: '10m', stuckAfter: '5m' }, pools: [{ name: 'local', maxRunners: 0, idleTimeout: '1h', maxLifetime: '1d' }] },
      });
    });
    after(() => t.close());

    test('recover(): a stuck job is requeued; one with recent logs or a recent heartbeat is not', async () => {
      const db = t.server.db;
      const start = clock.now();
      const pool = uniquePool('stuck');
      const jobs = await submit(db, start, { pool, count: 3 });
      const fences = [];
      for (const job of jobs) {
        const runner = await registerTestRunner(db, start, { pool: 'local' });
        const [j] = await claim(db, start, runner.id, pool);
        assert.equal(j!.id, job.id);
        await markRunning(db, start, fenceOf(j!));
        fences.push(fenceOf(j!));
      }
      clock.advance(4 * 60_000);
      await appendLogs(db, clock.now(), fences[1]!, 1, [line('alive', clock.now())]);
      t.server.ctx.heartbeats.record(fences[2]!.runnerId, clock.now(), 'test'); // buffered: recover() flushes it

      clock.advance(60_000);
      const early = await recover(t.server.ctx, clock.now());
      assert.deepEqual(early.requeued, [], 'exactly stuckAfter is not yet stuck');
      clock.advance(1);
      const report = await recover(t.server.ctx, clock.now());
      assert.deepEqual(report.requeued, [jobs[0]!.id]);
      assert.deepEqual(report.offline, []);
      const [quiet, logging, beating] = await Promise.all(jobs.map((j) => getJob(db, j.id)));
      assert.equal(quiet!.state, 'queued');
      assert.equal(logging!.state, 'running');
      assert.equal(beating!.state, 'running');
      assert.deepEqual((await timeline(db, quiet!.id)).slice(-1), ['running->queued: stuck: no activity for 300s (attempt 1 of 3)']);
      // Finish the survivors so later tests start from a quiet fleet.
      for (const f of fences.slice(1)) await db.transaction((tx) => completeJob(tx, clock.now(), f, { exitCode: 0 }));
      await db.transaction((tx) => cancelJob(tx, clock.now(), quiet!.id, 'test'));
    });

    test('offline: a runner silent for offlineAfter goes offline on tick and its jobs are requeued', async () => {
      const db = t.server.db;
      const start = clock.now();
      const silent = await registerTestRunner(db, start, { pool: 'local' });
      const alive = await registerTestRunner(db, start, { pool: 'local' });
      const pool = uniquePool('offline');
      const [j1, j2] = await submit(db, start, { pool, count: 2 });
      const [c1] = await claim(db, start, silent.id, pool);
      const [c2] = await claim(db, start, alive.id, pool);
      assert.deepEqual([c1!.id, c2!.id], [j1!.id, j2!.id]);
      await markRunning(db, start, fenceOf(c1!));
      await markRunning(db, start, fenceOf(c2!));
      // The live runner heartbeats and logs; the silent one only logs for 6 minutes, so its job
      // is not stuck (activity within 5m) when the runner's silence reaches offlineAfter.
      for (let m = 1; m <= 10; m++) {
        clock.advance(60_000);
        t.server.ctx.heartbeats.record(alive.id, clock.now(), 'test');
        await appendLogs(db, clock.now(), fenceOf(c2!), m, [line(`minute ${m}`, clock.now())]);
        if (m <= 6) await appendLogs(db, clock.now(), fenceOf(c1!), m, [line(`minute ${m}`, clock.now())]);
        if (m === 5) {
          await t.server.maintenance.tick();
          assert.equal((await getRunner(db, silent.id)).state, 'idle');
        }
      }
      await t.server.maintenance.tick(); // exactly offlineAfter since its heartbeat: not yet
      assert.equal((await getRunner(db, silent.id)).state, 'idle');
      assert.equal((await getJob(db, j1!.id)).state, 'running');
      clock.advance(1);
      await t.server.maintenance.tick();
      const gone = await getRunner(db, silent.id);
      assert.equal(gone.state, 'offline');
      assert.equal(gone.stateReason, 'no heartbeat for 600s');
      assert.equal((await getRunner(db, alive.id)).state, 'idle');
      const [r1, r2] = await Promise.all([getJob(db, j1!.id), getJob(db, j2!.id)]);
      assert.equal(r1!.state, 'queued');
      assert.equal(r1!.runnerId, null);
      assert.equal(r2!.state, 'running', 'the live runner keeps its job');
      assert.deepEqual((await timeline(db, j1!.id)).slice(-1), ['running->queued: runner went offline (attempt 1 of 3)']);
      const runnerEvents = await db.query(`select from_state, to_state, reason from events where kind = 'runner' and subject = $1 order by id`, [silent.id]);
      assert.deepEqual(runnerEvents.at(-1), { from_state: 'idle', to_state: 'offline', reason: 'no heartbeat for 600s' });
      // The fence holds across recovery: the silent runner's late result is refused.
      await assert.rejects(db.transaction((tx) => completeJob(tx, clock.now(), fenceOf(c1!), { exitCode: 0 })), ConflictError);
    });

    test('timeout via tick: a running job past timeout + 30s grace is recorded timed_out', async () => {
      const db = t.server.db;
      const start = clock.now();
      const runner = await registerTestRunner(db, start, { pool: 'local' });
      const pool = uniquePool('timeout');
      const [job] = await submit(db, start, { pool, timeoutMs: 60_000 });
      const [c] = await claim(db, start, runner.id, pool);
      await markRunning(db, start, fenceOf(c!));
      t.server.ctx.heartbeats.record(runner.id, start + 60_000, 'test');
      clock.advance(90_000);
      await t.server.maintenance.tick();
      assert.equal((await getJob(db, job!.id)).state, 'running');
      clock.advance(1);
      await t.server.maintenance.tick();
      assert.equal((await getJob(db, job!.id)).state, 'timed_out');
    });
  });
}
