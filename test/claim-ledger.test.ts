import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClaimLedger } from '../src/app/claim-ledger.js';

describe('claim ledger', () => {
  const R = 'runner-a';

  test('a claim answered unseen gives back its jobs, as often as a heartbeat is resent', () => {
    const l = new ClaimLedger(30_000);
    assert.equal(l.record(R, 7, [{ id: 1, attempt: 2 }], 1000), false);
    assert.deepEqual(l.abandon(R, [7], 2000), [{ id: 1, attempt: 2 }]);
    assert.deepEqual(l.abandon(R, [7], 2500), [{ id: 1, attempt: 2 }], 'a resent heartbeat finds them again');
    assert.deepEqual(l.abandon('runner-b', [7], 2500), [], "another runner's numbers are its own");
  });

  test('a claim given up before it is answered takes nothing: record() says undo', () => {
    const l = new ClaimLedger(30_000);
    assert.deepEqual(l.abandon(R, [8], 1000), []);
    assert.equal(l.isAbandoned(R, 8), true);
    assert.equal(l.isAbandoned(R, 9), false);
    assert.equal(l.record(R, 8, [{ id: 5, attempt: 1 }], 1100), true);
    assert.equal(l.record(R, 9, [{ id: 6, attempt: 1 }], 1100), false);
  });

  test('entries expire after the lost-claim timeout; forget() starts a runner over', () => {
    const l = new ClaimLedger(30_000);
    l.abandon(R, [1], 0);
    l.record('runner-b', 1, [{ id: 3, attempt: 1 }], 0);
    assert.equal(l.isAbandoned(R, 1), true);
    l.record('runner-c', 1, [], 30_001); // any call after the timeout sweeps
    assert.equal(l.isAbandoned(R, 1), false);
    assert.deepEqual(l.abandon('runner-b', [1], 30_002), [], 'expired with its jobs');
    l.abandon(R, [2], 30_003);
    l.forget(R);
    assert.equal(l.isAbandoned(R, 2), false);
  });
});
