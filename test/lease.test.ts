/*
 * Runner leases (issue 13, hole 11): a frozen runner's jobs never run twice at once, and a
 * claim answer read late never starts a job that has moved on. Real agent processes, frozen with
 * SIGSTOP, against a real server over PostgreSQL with short lease windows. Each job appends
 * start, tick (every 100 ms) and end lines to a file outside every work dir, so executions are
 * counted from outside the agents.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, ConfigError } from '../src/config/load.js';
import { leaseTiming } from '../src/config/lease.js';
import { Lease } from '../src/agent/lease.js';
import { LeaseGuard } from '../src/agent/lease-guard.js';
import { ManualClock, monotonicClock, sleep } from '../src/lib/clock.js';
import { silentLogger } from '../src/lib/logger.js';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { getJob, isAlive, killAllAgents, poolWithToken, startAgent, submit, waitForJob, type AgentProcess } from './helpers/agent.js';

// Heartbeats every 250 ms renew a 1.5 s lease; the server requeues after 2.5 s of silence. Pings
// are slow (the control channel's watchdog, 3 pings, outlasts the freezes) so that what an agent
// does on waking is decided by the lease, not by a reconnect that happens to abort its claim.
const CONFIG = { scheduler: { tick: 250, offlineAfter: 2500, stuckAfter: '1h' }, runner: { heartbeatInterval: 250, pingInterval: 5000, lease: 1500 } };

interface Run {
  attempt: number;
  start: number;
  last: number;
  ended: boolean;
}

/** A job that records its execution in `file`: start, a tick every 100 ms for `ticks`, end. */
function recordingJob(file: string, ticks: number): string {
  const line = (what: string) => `echo "${what} $RUNYARD_JOB_ID $RUNYARD_ATTEMPT $(date +%s%N)" >> "${file}"`;
  return `${line('start')}; i=0; while [ $i -lt ${ticks} ]; do ${line('tick')}; sleep 0.1; i=$((i+1)); done; ${line('end')}`;
}

/** Each execution of `jobId` found in `file`, in start order, with its first and last line (ms). */
function runsOf(file: string, jobId: number): Run[] {
  if (!existsSync(file)) return [];
  const runs = new Map<string, Run>();
  const order: Run[] = [];
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    const [what, job, attempt, ns] = l.split(' ');
    if (Number(job) !== jobId) continue;
    const at = Number(BigInt(ns!) / 1_000_000n);
    // An attempt number can repeat (a claim refunded before it started): every start is a new run.
    if (what === 'start') {
      const r = { attempt: Number(attempt), start: at, last: at, ended: false };
      runs.set(attempt!, r);
      order.push(r);
      continue;
    }
    const r = runs.get(attempt!);
    if (!r) continue;
    r.last = Math.max(r.last, at);
    if (what === 'end') r.ended = true;
  }
  return order;
}

function assertNoOverlap(runs: Run[]): void {
  for (let i = 1; i < runs.length; i++)
    assert.ok(runs[i]!.start > runs[i - 1]!.last, `run ${i + 1} (attempt ${runs[i]!.attempt}) started at ${runs[i]!.start}, before run ${i} (attempt ${runs[i - 1]!.attempt}) was last seen at ${runs[i - 1]!.last}: ${JSON.stringify(runs)}`);
}

describe('lease settings', () => {
  test('the lease defaults to 3/4 of the shortest requeue window; its kill grace is half the margin', () => {
    const c = loadConfig({ env: {} });
    assert.deepEqual(leaseTiming(c), { leaseMs: 45_000, windowMs: 60_000, marginMs: 15_000, killGraceMs: 5000, explicit: false });
    const short = loadConfig({ env: {}, overrides: { scheduler: { offlineAfter: '4s', stuckAfter: '5m' }, runner: { heartbeatInterval: '1s' } } });
    assert.deepEqual(leaseTiming(short), { leaseMs: 3000, windowMs: 4000, marginMs: 1000, killGraceMs: 500, explicit: false });
    const stuck = loadConfig({ env: {}, overrides: { scheduler: { offlineAfter: '10m', stuckAfter: '5m' } } });
    assert.equal(leaseTiming(stuck).leaseMs, 225_000, 'stuckAfter is a requeue window too');
    assert.equal(loadConfig({ env: { RUNYARD_RUNNER_LEASE: '40s' } }).runner.lease, 40_000);
  });

  test('a lease that cannot be renewed, or that ends after the server requeues, is refused at load', () => {
    const problems = (overrides: Record<string, unknown>) => {
      try {
        loadConfig({ env: {}, overrides });
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.problems;
      }
      return [];
    };
    assert.deepEqual(problems({ runner: { lease: '30s' } }), ['runner.lease: runner.lease (30000ms) must be longer than runner.heartbeatInterval (30000ms): heartbeats renew it']);
    assert.deepEqual(problems({ runner: { lease: '59800ms' } }), ['runner.lease: scheduler.offlineAfter (60000ms) must be at least runner.lease (59800ms) + 500ms, so a silent runner\'s jobs are stopped before they are requeued']);
    const derived = problems({ scheduler: { offlineAfter: '30s' } });
    assert.equal(derived.length, 1);
    assert.match(derived[0]!, /^runner\.heartbeatInterval: the runner lease \(22500ms: 3\/4 of min\(scheduler\.offlineAfter, scheduler\.stuckAfter\) unless runner\.lease is set\) must be longer than runner\.heartbeatInterval \(30000ms\)/);
    assert.deepEqual(problems({ scheduler: { offlineAfter: '1s' }, runner: { heartbeatInterval: 100 } }), ['scheduler.offlineAfter: scheduler.offlineAfter (1000ms) must be at least the runner lease (750ms: 3/4 of min(scheduler.offlineAfter, scheduler.stuckAfter) unless runner.lease is set) + 500ms, so a silent runner\'s jobs are stopped before they are requeued']);
  });
});

describe('Lease (agent side, manual clock)', () => {
  test('renewed from the send time; an answer read after the lease ran out does not revive it; each expiry is a new epoch', () => {
    const clock = new ManualClock(1000);
    const lease = new Lease(1500, clock, sleep, 1000);
    const events: string[] = [];
    lease.on('expired', () => events.push('expired'));
    lease.on('renewed', () => events.push('renewed'));
    const epoch = lease.epoch;
    clock.advance(1000);
    lease.renew(1800); // sent at 1800, answered at 2000
    assert.equal(lease.deadline, 3300);
    clock.advance(1299);
    assert.ok(lease.holds(epoch));
    clock.advance(1);
    assert.equal(lease.check(), false, 'expired at the deadline, noticed by the check itself');
    assert.deepEqual(events, ['expired']);
    lease.renew(1700); // a heartbeat sent before the freeze, answered after it
    assert.equal(lease.check(), false);
    lease.renew(clock.now() - 10);
    assert.ok(lease.check());
    assert.deepEqual(events, ['expired', 'renewed']);
    assert.equal(lease.holds(epoch), false, 'work begun under the first lease does not hold across the gap');
    assert.ok(lease.holds(lease.epoch));
  });
});

describe('LeaseGuard (a real guard process)', () => {
  test('stops a job group when the lease is not renewed, even a process that left the group', async () => {
    const guard = new LeaseGuard({ killGraceMs: 300, log: silentLogger });
    try {
      // A job that ignores SIGTERM, and a child of it that left the group (setsid-like: its own group).
      const job = spawn('/bin/sh', ['-c', 'trap "" TERM; while :; do sleep 0.05; done'], { detached: true, stdio: 'ignore', env: { PATH: process.env.PATH, RUNYARD_LEASE_ID: guard.marker } });
      const stray = spawn('/bin/sh', ['-c', 'while :; do sleep 0.05; done'], { detached: true, stdio: 'ignore', env: { PATH: process.env.PATH, RUNYARD_LEASE_ID: guard.marker } });
      const other = spawn('/bin/sh', ['-c', 'while :; do sleep 0.05; done'], { detached: true, stdio: 'ignore', env: { PATH: process.env.PATH, RUNYARD_LEASE_ID: 'someone-else' } });
      try {
        guard.renew(monotonicClock.now() + 800);
        guard.add(job.pid!);
        await waitFor('guard started', () => guard.pid);
        const t0 = Date.now();
        await waitFor('job and stray killed after the lease and the grace', () => !isAlive(job.pid!) && !isAlive(stray.pid!), 10_000);
        const took = Date.now() - t0;
        assert.ok(took >= 700, `not before the lease ran out (${took}ms)`);
        assert.ok(isAlive(other.pid!), 'a process of another agent is left alone');
        // After the expiry a new group is killed as soon as it is announced, until a renewal.
        const late = spawn('/bin/sh', ['-c', 'while :; do sleep 0.05; done'], { detached: true, stdio: 'ignore' });
        guard.add(late.pid!);
        await waitFor('late group killed', () => !isAlive(late.pid!), 5000);
        // A renewal lets jobs run again, until the renewed lease runs out in turn.
        const renewedAt = Date.now();
        guard.renew(monotonicClock.now() + 1000);
        const renewed = spawn('/bin/sh', ['-c', 'while :; do sleep 0.05; done'], { detached: true, stdio: 'ignore' });
        guard.add(renewed.pid!);
        await waitFor('renewed group killed at the new deadline', () => !isAlive(renewed.pid!), 10_000);
        assert.ok(Date.now() - renewedAt >= 900, `ran until the renewed lease ran out (${Date.now() - renewedAt}ms)`);
      } finally {
        for (const c of [job, stray, other]) if (c.pid && isAlive(c.pid)) process.kill(-c.pid, 'SIGKILL');
      }
    } finally {
      guard.close();
    }
  });
});

describe('frozen runners (SIGSTOP past offlineAfter)', () => {
  let t: TestServer;
  let tmp: string;
  const frozen: AgentProcess[] = [];
  before(async () => {
    t = await startTestServer({ store: 'postgres', config: CONFIG });
    tmp = mkdtempSync(join(tmpdir(), 'runyard-lease-'));
  });
  after(async () => {
    for (const a of frozen) a.signal('SIGCONT');
    await killAllAgents();
    await t?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('a frozen runner\'s job is stopped before the server hands it to another runner: no overlap, no loss', async () => {
    const file = join(tmp, 'frozen-runs.log');
    const token = await poolWithToken(t, { name: 'frozen', maxJobsPerRunner: 1 });
    const a = startAgent({ server: t.url, token });
    frozen.push(a);
    const aId = await a.runnerId();
    await a.waitForLog('ready for jobs');
    const job = await submit(t, { pool: 'frozen', command: recordingJob(file, 60), maxAttempts: 5 });
    await waitFor('attempt 1 running on the first runner', () => runsOf(file, job.id).length === 1 && runsOf(file, job.id)[0]!.last > runsOf(file, job.id)[0]!.start, 15_000);
    assert.equal((await getJob(t, job.id)).runnerId, aId);

    a.signal('SIGSTOP');
    const b = startAgent({ server: t.url, token });
    const bId = await b.runnerId();
    await waitFor('the job on the second runner', async () => (await getJob(t, job.id)).runnerId === bId, 20_000, 50);
    const done = await waitForJob(t, job.id, ['succeeded', 'failed'], 30_000);
    const resumedAt = Date.now();
    a.signal('SIGCONT');
    await waitFor('the frozen runner heartbeats again', async () => {
      const r = (await t.api('GET', `/api/v1/runners/${aId}`)).body.runner;
      return r.state !== 'offline' && new Date(r.lastHeartbeatAt).getTime() > resumedAt + 500;
    }, 15_000, 50);

    assert.equal(done.state, 'succeeded', 'no loss');
    const runs = runsOf(file, job.id);
    assert.equal(runs.length, 2, JSON.stringify(runs));
    assertNoOverlap(runs);
    assert.equal(runs[0]!.ended, false, 'the frozen runner\'s attempt was stopped');
    assert.equal(runs[1]!.ended, true);
    const gap = runs[1]!.start - runs[0]!.last;
    console.log(`frozen runner's attempt last seen ${gap}ms before the retry started`);
    assert.equal(a.logs.filter((l) => l.msg === 'job result reported').length, 0, 'the stopped attempt reported nothing');
    assert.ok(a.count('lease expired: no heartbeat answered in time; stopping jobs, not claiming') >= 1);
    assert.ok(a.count('lease renewed') >= 1, 'back in contact, the runner holds a lease again');
  });

  test('a claim answer read late (frozen during the long poll) does not start the job a second time', async () => {
    const file = join(tmp, 'late-claim-runs.log');
    const token = await poolWithToken(t, { name: 'lateclaim', maxJobsPerRunner: 1 });
    const c = startAgent({ server: t.url, token });
    frozen.push(c);
    const cId = await c.runnerId();
    await c.waitForLog('ready for jobs');
    // its claim long poll is parked on the server
    await waitFor('claim parked', () => ((t.server.hub as any).waiters.get('lateclaim')?.size ?? 0) >= 1, 10_000);
    c.signal('SIGSTOP');
    const job = await submit(t, { pool: 'lateclaim', command: recordingJob(file, 3), maxAttempts: 5 });
    await waitFor('the parked claim took the job for the frozen runner', async () => {
      const j = await getJob(t, job.id);
      return j.state === 'claimed' && j.runnerId === cId;
    }, 10_000, 50);

    const d = startAgent({ server: t.url, token });
    const dId = await d.runnerId();
    const done = await waitForJob(t, job.id, ['succeeded', 'failed'], 30_000);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.runnerId, dId);
    const resumedAt = Date.now();
    c.signal('SIGCONT');
    // Back in contact: its heartbeats are answered again (a late start would have come first).
    await waitFor('the frozen runner heartbeats again', async () => {
      const r = (await t.api('GET', `/api/v1/runners/${cId}`)).body.runner;
      return r.state !== 'offline' && new Date(r.lastHeartbeatAt).getTime() > resumedAt + 500;
    }, 15_000, 50);

    const runs = runsOf(file, job.id);
    assert.equal(runs.length, 1, `the job ran once: ${JSON.stringify(runs)}`);
    assert.equal(runs[0]!.ended, true);
    assert.equal((await getJob(t, job.id)).state, 'succeeded');
  });
});

describe('ServerList (agent side, manual clock)', () => {
  test('moves to the next live server once the current one has not answered for the failover time', async () => {
    const { ServerList } = await import('../src/agent/server-list.js');
    const clock = new ManualClock(0);
    const list = new ServerList('http://a:1/', 1000, clock);
    assert.equal(list.unreachable(), undefined, 'no other server known');
    list.update(['http://b:2', 'http://a:1', 'http://c:3/']);
    assert.deepEqual(list.known, ['http://a:1', 'http://b:2', 'http://c:3']);
    list.reachable();
    assert.equal(list.unreachable(), undefined);
    clock.advance(999);
    assert.equal(list.unreachable(), undefined, 'not before the failover time');
    list.reachable(); // an answer (even an error status) resets the count
    clock.advance(1);
    assert.equal(list.unreachable(), undefined);
    clock.advance(1000);
    assert.equal(list.unreachable(), 'http://b:2');
    assert.equal(list.current, 'http://b:2');
    assert.equal(list.unreachable(), undefined, 'the new server gets its own while');
    clock.advance(1000);
    assert.equal(list.unreachable(), 'http://c:3');
    list.update(['http://a:1']); // the servers' own list no longer has c, but c is where we are
    assert.deepEqual(list.known, ['http://c:3', 'http://a:1']);
  });
});
