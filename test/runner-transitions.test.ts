/*
 * Runner state transitions (src/store/queries/runner-transitions.ts): each applies only from its
 * listed states; from any other it changes nothing, records no event and says why.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { openTestDb } from './helpers/db.js';
import { registerTestRunner, uniquePool } from './helpers/queue.js';
import { moveRunner, registerRunner, RUNNER_TRANSITIONS, transitionAllowed, type RunnerTransition } from '../src/store/queries/runner-transitions.js';
import { getRunner, LIVE_STATES, type RunnerState } from '../src/store/queries/runners.js';
import { listEvents } from '../src/store/queries/events.js';
import { GoneError } from '../src/lib/errors.js';
import type { Db } from '../src/store/db.js';

let db: Db;
let close: () => Promise<void>;
before(async () => ({ db, close } = await openTestDb('pglite')));
after(() => close());

const T0 = Date.parse('2026-01-01T00:00:00Z');
const ALL: RunnerState[] = [...LIVE_STATES, 'terminated'];

/** A registered runner put straight into `state` (as any earlier path could leave it). */
async function runnerIn(state: RunnerState): Promise<string> {
  const r = await registerTestRunner(db, T0, { pool: uniquePool('tr') });
  await db.query('update runners set state = $2 where id = $1', [r.id, state]);
  return r.id;
}

const eventsOf = async (id: string) => (await listEvents(db, { kind: 'runner', subject: id, after: 0, limit: 100 })).length;

test('every transition moves from its listed states and from no other', async () => {
  for (const name of Object.keys(RUNNER_TRANSITIONS) as RunnerTransition[]) {
    if (name === 'register') continue; // an upsert, tested below
    const rule = RUNNER_TRANSITIONS[name];
    for (const from of ALL) {
      const id = await runnerIn(from);
      const before = await eventsOf(id);
      const out = await moveRunner(db, T0 + 1, id, name, `test ${name}`, { actor: 'test' });
      const allowed = (rule.from as readonly RunnerState[]).includes(from) && from !== rule.to;
      assert.equal(out.moved, allowed, `${name} from ${from}`);
      assert.equal(transitionAllowed(name, from), (rule.from as readonly RunnerState[]).includes(from));
      const now = await getRunner(db, id);
      if (out.moved) {
        assert.equal(now.state, rule.to, `${name} from ${from} ends in ${rule.to}`);
        assert.equal(out.from, from);
        assert.equal(await eventsOf(id), before + 1, 'the move is recorded');
      } else {
        assert.equal(now.state, from, `${name} from ${from} changes nothing`);
        assert.equal(await eventsOf(id), before, 'a refused move records nothing');
        assert.equal(out.state, from);
        assert.match(out.refusal, new RegExp(`^runner ${id} is ${from}: it can only be ${rule.verb} when `));
      }
    }
  }
});

test('a refusal names the states the transition starts from', async () => {
  const id = await runnerIn('draining');
  const out = await moveRunner(db, T0, id, 'disable', 'test');
  assert.equal(out.moved, false);
  assert.equal(!out.moved && out.refusal, `runner ${id} is draining: it can only be disabled when idle, busy or offline`);
  const missing = randomUUID();
  const none = await moveRunner(db, T0, missing, 'drain', 'test');
  assert.deepEqual(none, { moved: false, state: undefined, refusal: `runner ${missing} not found` });
});

test('resume returns an offline runner to its operator hold', async () => {
  const id = await runnerIn('offline');
  await db.query(`update runners set hold = 'disabled' where id = $1`, [id]);
  const { resumeRunner } = await import('../src/store/queries/runner-transitions.js');
  const out = await resumeRunner(db, T0 + 5, id);
  assert.equal(out.moved, true);
  assert.equal((await getRunner(db, id)).state, 'disabled');
});

test('registration brings back any live runner, never a terminated one', async () => {
  const spec = (id: string, pool: string) => ({ id, pool, name: 'r', version: 't', publicKey: 'k', labels: [], slots: 1, configHash: 'h', ephemeral: false });
  for (const from of LIVE_STATES) {
    const id = await runnerIn(from);
    const { pool } = await getRunner(db, id);
    const { runner, from: was } = await registerRunner(db, T0 + 2, spec(id, pool));
    assert.equal(was, from);
    assert.equal(runner.state, 'idle', `registered again from ${from}`);
  }
  const id = await runnerIn('terminated');
  const { pool } = await getRunner(db, id);
  await assert.rejects(registerRunner(db, T0 + 3, spec(id, pool)), (err: unknown) => err instanceof GoneError && /is terminated: it can only be registered when/.test((err as Error).message));
  assert.equal((await getRunner(db, id)).state, 'terminated', 'a refused registration changes nothing');
});
