/*
 * The one token bucket behind the Kubernetes client's qps/burst, the ECS launch bucket and the
 * simulator's provider API limit: a burst at once, then the rate, callers in order, the clock
 * injected (no test here waits in real time).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket } from '../src/lib/token-bucket.js';

/** A bucket on a hand-moved clock whose sleep advances it. */
function manual(perSecond: number, burst: number) {
  const clock = { t: 0, slept: [] as number[] };
  const b = new TokenBucket(perSecond, burst, { now: () => clock.t, sleep: async (ms) => { clock.slept.push(ms); clock.t += ms; } });
  return { b, clock };
}

test('a burst goes at once, then calls are paced at the rate (Kubernetes qps 20, burst 40)', async () => {
  const { b, clock } = manual(20, 40);
  for (let i = 0; i < 40; i++) await b.take();
  assert.equal(clock.t, 0, 'the burst costs no time');
  for (let i = 0; i < 10; i++) await b.take();
  assert.equal(clock.t, 500, '10 more at 20 a second take half a second');
  assert.deepEqual(clock.slept, Array(10).fill(50));
});

test('tokens taken n at a time (ECS RunTask count): 300 launches on 100 + 20/s take 10 s', async () => {
  const { b, clock } = manual(20, 100);
  for (let i = 0; i < 10; i++) await b.take(10);
  assert.equal(clock.t, 0, 'the first 100 launches do not wait');
  await b.take(10);
  assert.equal(clock.t, 500, '10 more wait half a second at 20/s');
  for (let i = 0; i < 19; i++) await b.take(10);
  assert.equal(clock.t, 10_000, '(300 - 100) / 20 = 10 s');
  assert.equal(TokenBucket.floorMs(300, 100, 20), 10_000);
  assert.equal(TokenBucket.floorMs(50, 40, 20), 500);
  assert.equal(TokenBucket.floorMs(30, 40, 20), 0, 'within the burst the floor is 0');
});

test('concurrent callers are served in the order they asked, each waiting its own share', async () => {
  const waits: number[] = [];
  const order: number[] = [];
  // the clock stands still while all five ask at once: each is told its own wait
  const bucket = new TokenBucket(10, 2, { now: () => 0, sleep: async (ms) => void waits.push(ms) });
  await Promise.all([0, 1, 2, 3, 4].map(async (i) => { await bucket.take(); order.push(i); }));
  assert.deepEqual(waits, [100, 200, 300], 'the 3rd, 4th and 5th call wait 1, 2 and 3 tokens’ time');
  assert.deepEqual(order, [0, 1, 2, 3, 4]);
});

test('an idle bucket refills to its burst and no further', async () => {
  const { b, clock } = manual(20, 40);
  for (let i = 0; i < 40; i++) await b.take();
  clock.t += 60_000; // a minute idle: 1,200 tokens' worth, but the bucket holds 40
  for (let i = 0; i < 40; i++) await b.take();
  assert.equal(clock.t, 60_000, 'the refilled burst goes at once');
  await b.take();
  assert.equal(clock.t, 60_050, 'then the rate again');
});

test('an ask larger than the burst takes the whole burst (it could never be served whole)', async () => {
  const { b, clock } = manual(20, 10);
  await b.take(25);
  assert.equal(clock.t, 0);
  await b.take(1);
  assert.equal(clock.t, 50);
});

test('reserve() on a virtual clock (the simulator): when each start may happen, without sleeping', () => {
  const b = new TokenBucket(2, 2);
  assert.deepEqual([b.reserve(1, 0), b.reserve(1, 0), b.reserve(1, 0), b.reserve(1, 0)], [0, 0, 500, 1_000]);
  assert.equal(b.reserve(1, 10_000), 10_000, 'after 10 s the debt is paid and the burst is back');
});

test('a bucket with no rate or an empty burst is refused', () => {
  assert.throws(() => new TokenBucket(0, 10), /perSecond > 0/);
  assert.throws(() => new TokenBucket(5, 0), /burst >= 1/);
});
