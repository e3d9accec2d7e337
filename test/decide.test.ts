import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decidePool, startBackoff, type PoolView, type RunnerView } from '../src/scheduler/decide.js';
import { poolSchema } from '../src/config/schema.js';

const NOW = 1_000_000_000;
const HASH = 'h1';

function pool(o: Record<string, unknown> = {}, queued = 0, runners: RunnerView[] = [], failures = { count: 0, lastAt: 0 }): PoolView {
  return { config: poolSchema.parse({ name: 'p', ...o }), configHash: HASH, queued, runners, startFailures: failures };
}

let n = 0;
function runner(o: Partial<RunnerView> = {}): RunnerView {
  return { id: `r${++n}`, state: 'idle', createdAt: NOW - 60_000, idleSince: NOW - 1_000, activeJobs: 0, slots: 1, configHash: HASH, jobsStarted: 0, ephemeral: false, provider: 'process', image: null, ...o };
}

const starts = (a: ReturnType<typeof decidePool>) => a.filter((x) => x.kind === 'start').reduce((s, x) => s + (x.kind === 'start' ? x.count : 0), 0);
const stops = (a: ReturnType<typeof decidePool>) => a.filter((x) => x.kind !== 'start').map((x) => (x.kind !== 'start' ? `${x.kind}:${x.runnerId}` : ''));

test('scale-up: demand, free slots, runners already starting, maxRunners', () => {
  const cases: { name: string; view: PoolView; start: number }[] = [
    { name: 'nothing queued, minIdle 0: nothing', view: pool({}, 0), start: 0 },
    { name: 'one job from zero: one runner', view: pool({}, 1), start: 1 },
    { name: '10 jobs, 4 slots each: 3 runners', view: pool({ maxJobsPerRunner: 4 }, 10), start: 3 },
    { name: '200 jobs capped at maxRunners 5', view: pool({ maxJobsPerRunner: 4, maxRunners: 5 }, 200), start: 5 },
    { name: 'starting runner already covers the job: no race', view: pool({}, 1, [runner({ state: 'starting', idleSince: null, createdAt: NOW - 1_000 })]), start: 0 },
    { name: 'idle runner covers the job', view: pool({}, 1, [runner()]), start: 0 },
    { name: 'busy runner with a free slot covers one job', view: pool({ maxJobsPerRunner: 2 }, 1, [runner({ state: 'busy', slots: 2, activeJobs: 1 })]), start: 0 },
    { name: 'busy runner full: start one', view: pool({ maxJobsPerRunner: 2 }, 1, [runner({ state: 'busy', slots: 2, activeJobs: 2 })]), start: 1 },
    { name: 'at maxRunners: nothing more', view: pool({ maxRunners: 2 }, 5, [runner({ state: 'busy', activeJobs: 1 }), runner({ state: 'busy', activeJobs: 1 })]), start: 0 },
    { name: 'draining runners count against maxRunners', view: pool({ maxRunners: 1 }, 1, [runner({ state: 'draining', activeJobs: 1 })]), start: 0 },
    { name: 'minIdle 2 from zero: two warm', view: pool({ minIdle: 2 }, 0), start: 2 },
    { name: 'minIdle 2 with one idle: one more', view: pool({ minIdle: 2 }, 0, [runner()]), start: 1 },
    { name: 'minIdle 2, two idle, one job arrives: one more to stay warm', view: pool({ minIdle: 2 }, 1, [runner(), runner()]), start: 1 },
    { name: 'ephemeral: one runner per job', view: pool({ ephemeral: true, maxJobsPerRunner: 4 }, 3), start: 3 },
    { name: 'ephemeral runner that already ran a job is not capacity', view: pool({ ephemeral: true }, 1, [runner({ ephemeral: true, jobsStarted: 1 })]), start: 1 },
  ];
  for (const c of cases) assert.equal(starts(decidePool(c.view, NOW)), c.start, c.name);
});

test('scale-down after idleTimeout, above minIdle, never while jobs wait', () => {
  const idleLong = runner({ idleSince: NOW - 400_000 });
  assert.deepEqual(stops(decidePool(pool({}, 0, [idleLong]), NOW)), [`terminate:${idleLong.id}`], 'idle past 5m default');
  assert.deepEqual(stops(decidePool(pool({}, 0, [runner({ idleSince: NOW - 100_000 })]), NOW)), [], 'not yet');
  assert.deepEqual(stops(decidePool(pool({ minIdle: 1 }, 0, [runner({ idleSince: NOW - 400_000 })]), NOW)), [], 'kept warm by minIdle');
  const a = runner({ idleSince: NOW - 900_000 });
  const b = runner({ idleSince: NOW - 400_000 });
  assert.deepEqual(stops(decidePool(pool({ minIdle: 1 }, 0, [a, b]), NOW)), [`terminate:${a.id}`], 'the longest-idle goes, the freshest stays warm');
  assert.deepEqual(stops(decidePool(pool({}, 3, [runner({ idleSince: NOW - 900_000 })]), NOW)), [], 'jobs waiting: keep');
  assert.deepEqual(stops(decidePool(pool({}, 0, [runner({ idleSince: NOW - 900_000, provider: 'manual' })]), NOW)), [], 'hand-started agents are not scaled down');
});

test('refresh: lifetime, config change, start timeout, offline, ephemeral done', () => {
  const old = runner({ createdAt: NOW - 90_000_000 });
  const oldBusy = runner({ createdAt: NOW - 90_000_000, state: 'busy', activeJobs: 1 });
  assert.deepEqual(stops(decidePool(pool({}, 0, [old, oldBusy]), NOW)), [`terminate:${old.id}`, `drain:${oldBusy.id}`]);
  const stale = runner({ configHash: 'old', state: 'busy', activeJobs: 1 });
  const plan = decidePool(pool({}, 1, [stale]), NOW);
  assert.deepEqual(stops(plan), [`drain:${stale.id}`], 'stale busy runner drains without interrupting its job');
  assert.equal(starts(plan), 1, 'a replacement starts for the queued job, never the stale runner');
  const stuckStart = runner({ state: 'starting', createdAt: NOW - 61_000, idleSince: null });
  assert.deepEqual(stops(decidePool(pool({}, 0, [stuckStart]), NOW)), [`terminate:${stuckStart.id}`]);
  const off = runner({ state: 'offline' });
  assert.deepEqual(stops(decidePool(pool({}, 0, [off]), NOW)), [`terminate:${off.id}`]);
  const eph = runner({ ephemeral: true, jobsStarted: 1 });
  assert.deepEqual(stops(decidePool(pool({ ephemeral: true }, 0, [eph]), NOW)), [`terminate:${eph.id}`]);
});

test('start failures back off exponentially so a broken image does not loop', () => {
  assert.equal(startBackoff(0), 0);
  assert.equal(startBackoff(1), 5_000);
  assert.equal(startBackoff(3), 20_000);
  assert.equal(startBackoff(20), 300_000);
  assert.equal(starts(decidePool(pool({}, 1, [], { count: 2, lastAt: NOW - 5_000 }), NOW)), 0, 'within backoff');
  assert.equal(starts(decidePool(pool({}, 1, [], { count: 2, lastAt: NOW - 10_001 }), NOW)), 1, 'after backoff');
});

test('dynamic images: each base is a lane of its own, sharing the pool cap', () => {
  const byImage = (view: PoolView, images: Record<string, number>) => ({ ...view, queuedByImage: images });
  const startsOf = (a: ReturnType<typeof decidePool>) =>
    Object.fromEntries(a.filter((x) => x.kind === 'start').map((x) => [x.kind === 'start' ? (x.image ?? '(pool image)') : '', x.kind === 'start' ? x.count : 0]));

  // two jobs for base a, one for b, none for the pool image: one runner per base
  assert.deepEqual(startsOf(decidePool(byImage(pool({ maxJobsPerRunner: 2 }, 3), { a: 2, b: 1 }), NOW)), { a: 1, b: 1 });
  // an idle runner of the pool image is no capacity for a dynamic job
  assert.deepEqual(startsOf(decidePool(byImage(pool({}, 1, [runner()]), { a: 1 }), NOW)), { a: 1 });
  // an idle runner of base a covers a job for a; nothing to start
  assert.deepEqual(startsOf(decidePool(byImage(pool({}, 1, [runner({ image: 'a' })]), { a: 1 }), NOW)), {});
  // minIdle keeps runners of the pool image warm, never of a dynamic image
  assert.deepEqual(startsOf(decidePool(byImage(pool({ minIdle: 1, maxRunners: 5 }, 2), { a: 2 }), NOW)), { '(pool image)': 1, a: 2 });
  // the cap is shared: 3 headroom, the pool image's demand first, then the base with most queued
  assert.deepEqual(startsOf(decidePool(byImage(pool({ maxRunners: 3 }, 6), { a: 1, b: 3 }), NOW)), { '(pool image)': 2, b: 1 });
  // an idle runner of base a past idleTimeout goes while only pool-image jobs wait
  const idleA = runner({ image: 'a', idleSince: NOW - 10 * 60_000 });
  assert.deepEqual(stops(decidePool(byImage(pool({ maxRunners: 5 }, 1), {}), NOW).concat(decidePool(byImage(pool({ maxRunners: 5 }, 1, [idleA]), {}), NOW))), [`terminate:${idleA.id}`]);
  // ... but stays while a job of its image waits
  assert.deepEqual(stops(decidePool(byImage(pool({}, 1, [idleA]), { a: 1 }), NOW)), []);
});

test('scheduled minIdle: weekdays 08:00–19:00 Europe/Berlin keep 4 warm, else minIdle', () => {
  const sched = { timeZone: 'Europe/Berlin', windows: [{ days: 'mon-fri', from: '08:00', to: '19:00', minIdle: 4 }] };
  const at = (iso: string) => Date.parse(iso);
  const cases: { name: string; now: number; start: number }[] = [
    // 2026-01-05 is a Monday; Berlin is UTC+1 in winter, UTC+2 in summer
    { name: 'Monday 07:59 Berlin: before the window', now: at('2026-01-05T06:59:00Z'), start: 0 },
    { name: 'Monday 08:00 Berlin: window opens', now: at('2026-01-05T07:00:00Z'), start: 4 },
    { name: 'Monday 18:59 Berlin', now: at('2026-01-05T17:59:00Z'), start: 4 },
    { name: 'Monday 19:00 Berlin: window closed', now: at('2026-01-05T18:00:00Z'), start: 0 },
    { name: 'Saturday 10:00 Berlin: not a weekday', now: at('2026-01-10T09:00:00Z'), start: 0 },
    { name: 'summer time: Monday 08:30 Berlin is 06:30 UTC', now: at('2026-07-06T06:30:00Z'), start: 4 },
    { name: 'summer time: Monday 07:30 Berlin is 05:30 UTC', now: at('2026-07-06T05:30:00Z'), start: 0 },
  ];
  for (const c of cases) assert.equal(starts(decidePool(pool({ maxRunners: 10, minIdleSchedule: sched }, 0), c.now)), c.start, c.name);
  // outside the window the pool's own minIdle applies; idle runners beyond it scale down after idleTimeout
  assert.equal(starts(decidePool(pool({ minIdle: 1, maxRunners: 10, minIdleSchedule: sched }, 0), at('2026-01-10T09:00:00Z'))), 1, 'weekend: minIdle 1');
  const evening = at('2026-01-05T18:30:00Z');
  const warm = [1, 2, 3, 4].map(() => runner({ createdAt: evening - 7_200_000, idleSince: evening - 7_000_000 }));
  assert.equal(stops(decidePool(pool({ maxRunners: 10, minIdleSchedule: sched }, 0, warm), evening)).length, 4, 'after the window the warm runners go');
  assert.equal(stops(decidePool(pool({ maxRunners: 10, minIdleSchedule: sched }, 0, warm), evening - 3_600_000)).length, 0, 'inside the window they stay');
});

test('scheduled minIdle: overnight windows, overlaps, bad input named', () => {
  const sched = { timeZone: 'UTC', windows: [{ days: 'fri', from: '22:00', to: '06:00', minIdle: 2 }, { days: 'daily', from: '05:00', to: '07:00', minIdle: 3 }] };
  const at = (iso: string) => Date.parse(iso);
  const s = (now: number) => starts(decidePool(pool({ maxRunners: 10, minIdleSchedule: sched }, 0), now));
  assert.equal(s(at('2026-01-09T23:00:00Z')), 2, 'Friday 23:00: inside the overnight window');
  assert.equal(s(at('2026-01-10T04:00:00Z')), 2, 'Saturday 04:00: still the Friday night window');
  assert.equal(s(at('2026-01-10T05:30:00Z')), 3, 'overlap: the higher minIdle');
  assert.equal(s(at('2026-01-10T08:00:00Z')), 0);
  assert.equal(s(at('2026-01-11T04:00:00Z')), 0, 'Sunday 04:00: Saturday starts no window');
  const bad = (o: Record<string, unknown>) => poolSchema.safeParse({ name: 'p', maxRunners: 3, ...o });
  const issue = (o: Record<string, unknown>) => {
    const r = bad(o);
    assert.equal(r.success, false);
    return r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  };
  assert.match(issue({ minIdleSchedule: { timeZone: 'Mars/Olympus', windows: [{ from: '08:00', to: '09:00', minIdle: 1 }] } }), /^minIdleSchedule\.timeZone: unknown IANA time zone/);
  assert.match(issue({ minIdleSchedule: { windows: [{ days: 'someday', from: '08:00', to: '09:00', minIdle: 1 }] } }), /^minIdleSchedule\.windows\.0\.days: unknown day "someday"/);
  assert.match(issue({ minIdleSchedule: { windows: [{ from: '8am', to: '09:00', minIdle: 1 }] } }), /^minIdleSchedule\.windows\.0\.from: must be a time HH:MM/);
  assert.match(issue({ minIdleSchedule: { windows: [{ from: '08:00', to: '09:00', minIdle: 5 }] } }), /^minIdleSchedule\.windows\.0\.minIdle: minIdle \(5\) exceeds maxRunners \(3\)/);
});

test('scheduled minIdle: a parsed pool config parses again unchanged (it is stored and applied back)', () => {
  const once = poolSchema.parse({ name: 'p', maxRunners: 5, minIdleSchedule: { timeZone: 'Europe/Berlin', windows: [{ days: ['mon-thu', 'fri'], from: '08:00', to: '19:00', minIdle: 4 }] } });
  assert.deepEqual(poolSchema.parse(JSON.parse(JSON.stringify(once))), once);
});
