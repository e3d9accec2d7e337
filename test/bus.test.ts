/*
 * The server's typed bus (src/app/bus.ts): named events, listeners that filter by id, and the
 * wait a log follower parks on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createBus, jobActivity, waitForAny } from '../src/app/bus.js';

test('a wait on one job wakes for that job only, and leaves no listener behind', async () => {
  const bus = createBus();
  let woken = false;
  const wait = waitForAny(bus, jobActivity(7), 60_000).then(() => (woken = true));
  bus.emit('job-changed', 8);
  bus.emit('log-appended', 70);
  bus.emit('work-queued', 'p', 7);
  await new Promise((r) => setImmediate(r));
  assert.equal(woken, false, 'other jobs and other events do not wake it');
  bus.emit('log-appended', 7);
  await wait;
  assert.equal(woken, true);
  assert.equal(bus.listenerCount('job-changed') + bus.listenerCount('log-appended'), 0);
});

test('a wait ends at its timeout or on abort, whichever is first', async () => {
  const bus = createBus();
  const started = performance.now();
  await waitForAny(bus, [{ event: 'runners-changed' }], 20);
  assert.ok(performance.now() - started >= 15, 'the timeout');
  const abort = new AbortController();
  const wait = waitForAny(bus, [{ event: 'runners-changed' }], 60_000, abort.signal);
  abort.abort();
  await wait;
  assert.equal(bus.listenerCount('runners-changed'), 0);
});

test('listeners get the typed arguments', () => {
  const bus = createBus();
  const seen: unknown[] = [];
  bus.on('work-queued', (pool, count) => seen.push([pool, count]));
  bus.on('runners-changed', (why) => seen.push(why));
  bus.on('runner-terminated', (id) => seen.push(id));
  bus.emit('work-queued', 'linux', 3);
  bus.emit('runners-changed', 'load');
  bus.emit('runner-terminated', 'r-1');
  assert.deepEqual(seen, [['linux', 3], 'load', 'r-1']);
});
