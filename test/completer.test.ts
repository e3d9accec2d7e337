/*
 * The job completer (src/app/completer.ts): results that arrive together are written in one
 * transaction, each caller gets its own answer, and close() — which the server runs after HTTP
 * and before the store — waits until every result it took is written, then takes no more.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCompleter } from '../src/app/completer.js';
import { ManualClock } from '../src/lib/clock.js';
import { ConflictError } from '../src/lib/errors.js';
import { StoreUnavailableError } from '../src/store/store-errors.js';
import { getJob } from '../src/queue/read.js';
import type { Db } from '../src/store/db.js';
import { openTestDb, STORES } from './helpers/db.js';
import { claim, count, fenceOf, registerTestRunner, submit, uniquePool } from './helpers/queue.js';

for (const store of STORES) {
  describe(`completer on ${store}`, () => {
    let db: Db;
    let closeDb: () => Promise<void>;
    const clock = new ManualClock(1_700_000_000_000);

    before(async () => {
      ({ db, close: closeDb } = await openTestDb(store));
    });
    after(() => closeDb());

    test('close() waits for the results it took; later ones are refused', async () => {
      const pool = uniquePool();
      await submit(db, clock.now(), { pool, count: 5 });
      const runner = await registerTestRunner(db, clock.now(), { pool, slots: 5 });
      const jobs = await claim(db, clock.now(), runner.id, pool, 5);
      assert.equal(jobs.length, 5);
      const completer = new JobCompleter(db, clock);
      completer.start();
      // taken in one turn of the event loop: one batch; a result of a lost claim fails alone
      const answers = [...jobs.map((j) => completer.complete(fenceOf(j), { exitCode: 0 })), completer.complete({ ...fenceOf(jobs[0]!), attempt: 9 }, { exitCode: 0 })];
      const settled = Promise.allSettled(answers);
      await completer.close();
      assert.equal(await count(db, `select id from jobs where pool = $1 and state = 'succeeded'`, [pool]), 5, 'every result taken before close() is written when it returns');
      const outcomes = await settled;
      assert.deepEqual(outcomes.slice(0, 5).map((o) => o.status), Array(5).fill('fulfilled'));
      assert.equal(outcomes[5]!.status, 'rejected');
      assert.ok((outcomes[5] as PromiseRejectedResult).reason instanceof ConflictError, 'a stale fence is a conflict, for that caller only');

      await submit(db, clock.now(), { pool });
      const [late] = await claim(db, clock.now(), runner.id, pool, 1);
      await assert.rejects(completer.complete(fenceOf(late!), { exitCode: 0 }), StoreUnavailableError);
      assert.equal((await getJob(db, late!.id)).state, 'claimed', 'a refused result changes nothing');
    });
  });
}
