/*
 * The ec2 provider against the fake EC2 endpoint, whose instances are podman containers booting
 * the runner image (the "AMI": it carries the agent bundle): the provider contract, jobs on
 * instances, the warm pool of stopped instances (release, reuse with a fresh launch token, refresh),
 * kill -9 of the control plane, and each failure: throttling, no capacity, a lost answer, spot
 * interruption, failing status checks. Fails, never skips, when podman is missing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { providerContract } from './helpers/provider-contract.js';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { startPodman } from './helpers/podman.js';
import { FakeEc2 } from './helpers/fake-ec2/fake-ec2.js';
import { TEST_CREDENTIALS } from './helpers/aws/sigv4.js';
import { ServerProcess, freePort } from './helpers/process-server.js';
import { createPgDatabase } from './helpers/db.js';
import { Ec2Provider, TAG } from '../src/providers/ec2/ec2-provider.js';
import { poolSchema } from '../src/config/schema.js';
import { silentLogger } from '../src/lib/logger.js';
import { ManualClock } from '../src/lib/clock.js';
import type { LaunchSpec } from '../src/providers/provider.js';

// Every EC2 client here (the servers' too) signs with the fake's test key; never the metadata service.
process.env.AWS_ACCESS_KEY_ID = TEST_CREDENTIALS.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDENTIALS.secretAccessKey;
process.env.AWS_EC2_METADATA_DISABLED = 'true';

const AMI = 'ami-0f00dfeed0000c0de';
const SUBNET_A = 'subnet-0aaaaaaaaaaaaaaa1';
const SUBNET_B = 'subnet-0bbbbbbbbbbbbbbb2';
const podman = await startPodman();
const fake = await new FakeEc2({ dockerHost: podman.host, amis: { [AMI]: podman.image }, stopTimeoutSec: 10 }).start();
after(async () => {
  await fake.close();
  await podman.close();
});

const ec2Block = (extra: Record<string, unknown> = {}) => ({ region: 'us-east-1', endpoint: fake.url, imageId: AMI, instanceType: 't3.micro', pollInterval: '300ms', ...extra });
const byRunner = (runnerId: string) => fake.instances().filter((i) => i.tags.get(TAG.runner) === runnerId);
const jobOf = async (t: TestServer, id: number) => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;
async function jobDone(t: TestServer, id: number, timeoutMs = 90_000) {
  return waitFor(`job ${id} finished`, async () => {
    const j = await jobOf(t, id);
    return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
  }, timeoutMs, 200);
}
const fakeState = (id: string) => fake.instance(id).state;

describe('ec2 provider contract', () => {
  // the server's own ec2 provider would take the contract's instances for orphans: off here
  before(() => (process.env.RUNYARD_EC2 = 'false'));
  after(() => delete process.env.RUNYARD_EC2);
  providerContract('ec2', {
    // a restarted server knows its pools from its config: so does each fresh provider here
    make: (t) => new Ec2Provider({ instanceId: t.server.instanceId, log: silentLogger, pollMs: 300, pools: [poolSchema.parse({ name: 'contract', provider: 'ec2', ec2: ec2Block() })] }),
    poolOverrides: { provider: 'ec2', ec2: ec2Block() },
  });
});

/** A provider of our own next to a server that starts nothing, for the failure cases. */
describe('ec2 provider: launch failures and the warm pool, driven directly', () => {
  let t: TestServer;
  const clock = new ManualClock(Date.now());
  let provider: Ec2Provider;
  const exits: { id: string; detail: string }[] = [];
  before(async () => {
    process.env.RUNYARD_EC2 = 'false';
    t = await startTestServer({ config: { pools: [{ name: 'direct', maxRunners: 0 }] } });
    delete process.env.RUNYARD_EC2;
    provider = new Ec2Provider({ instanceId: t.server.instanceId, log: silentLogger, pollMs: 300, clock, baseDelayMs: 20 });
    provider.onExit((id, detail) => exits.push({ id, detail }));
  });
  after(async () => {
    for (const r of await provider.list()) await provider.terminate(r.runnerId, { graceMs: 0 });
    await provider.close();
    await t.close();
  });

  async function spec(ec2: Record<string, unknown>, pool: Record<string, unknown> = {}): Promise<LaunchSpec> {
    const { body } = await t.api('POST', '/api/v1/tokens', { pool: 'direct' });
    const runnerId = randomUUID();
    return { runnerId, name: `direct-${runnerId.slice(0, 8)}`, pool: poolSchema.parse({ name: 'direct', provider: 'ec2', ec2: ec2Block(ec2), ...pool }), serverUrl: t.url, registrationToken: body.secret, instanceId: t.server.instanceId };
  }

  test('RequestLimitExceeded backs off and the launch goes through: one instance', async () => {
    fake.fail('RunInstances', 'RequestLimitExceeded', 3);
    const before = fake.calls.length;
    const s = await spec({});
    await provider.create(s);
    const calls = fake.calls.slice(before).filter((c) => c.action === 'RunInstances');
    assert.deepEqual(calls.map((c) => c.error ?? 'ok'), ['RequestLimitExceeded', 'RequestLimitExceeded', 'RequestLimitExceeded', 'ok']);
    assert.equal(byRunner(s.runnerId).length, 1);
    await provider.terminate(s.runnerId, { graceMs: 0 });
  });

  test('a fresh provider finds instances of a pool applied through the API once it learns the store\'s pools', async () => {
    const s = await spec({});
    await provider.create(s);
    // a restarted server whose config names no ec2 pool: before the scheduler's reconcile hands it
    // the store's pools it cannot know that region and endpoint
    const fresh = new Ec2Provider({ instanceId: t.server.instanceId, log: silentLogger, pollMs: 300 });
    try {
      assert.equal((await fresh.list()).some((r) => r.runnerId === s.runnerId), false);
      fresh.learnPools([s.pool]);
      assert.equal((await fresh.list()).find((r) => r.runnerId === s.runnerId)?.alive, true, 'adopted, not lost');
    } finally {
      await fresh.close();
    }
    await provider.terminate(s.runnerId, { graceMs: 0 });
  });

  test('InsufficientInstanceCapacity moves on to the next subnet, then the next instance type', async () => {
    fake.exhaustCapacity({ type: 't3.micro' });
    fake.exhaustCapacity({ type: 't3a.small', subnet: SUBNET_A });
    try {
      const s = await spec({ instanceType: undefined, instanceTypes: { small: ['t3.micro', 't3a.small'] }, subnets: [SUBNET_A, SUBNET_B] }, { class: 'small' });
      const before = fake.calls.length;
      await provider.create(s);
      const tried = fake.calls.slice(before).filter((c) => c.action === 'RunInstances').map((c) => `${c.params.get('InstanceType')}@${c.params.get('SubnetId')}:${c.error ?? 'ok'}`);
      assert.deepEqual(tried, [`t3.micro@${SUBNET_A}:InsufficientInstanceCapacity`, `t3.micro@${SUBNET_B}:InsufficientInstanceCapacity`, `t3a.small@${SUBNET_A}:InsufficientInstanceCapacity`, `t3a.small@${SUBNET_B}:ok`]);
      const [i] = byRunner(s.runnerId);
      assert.equal(i!.instanceType, 't3a.small');
      assert.equal(i!.subnetId, SUBNET_B);
      await provider.terminate(s.runnerId, { graceMs: 0 });
      // nothing anywhere: a retryable error naming what was tried
      fake.exhaustCapacity({});
      const none = await spec({ subnets: [SUBNET_A] });
      await assert.rejects(provider.create(none), (e: any) => e.retryable === true && /no EC2 capacity for pool direct: tried t3.micro in subnet-0aaaaaaaaaaaaaaa1/.test(e.message));
      assert.equal(byRunner(none.runnerId).length, 0);
    } finally {
      fake.restoreCapacity();
    }
  });

  test('a RunInstances answer lost on the way is asked again with the same ClientToken: still one instance', async () => {
    fake.dropResponse('RunInstances');
    const s = await spec({});
    const before = fake.calls.length;
    await provider.create(s);
    const runs = fake.calls.slice(before).filter((c) => c.action === 'RunInstances');
    assert.equal(runs.length, 2, 'asked twice');
    assert.equal(runs[0]!.params.get('ClientToken'), runs[1]!.params.get('ClientToken'));
    assert.equal(byRunner(s.runnerId).length, 1, 'one instance for one runner');
    await provider.terminate(s.runnerId, { graceMs: 0 });
  });

  test('a released instance is stopped into the warm pool; the next start reuses it with new user data; refresh terminates it past maxLifetime', async () => {
    const warm = { warmPool: { stopped: 1 } };
    const s1 = await spec(warm, { maxLifetime: '1h' });
    await provider.create(s1);
    const [inst] = byRunner(s1.runnerId);
    await waitFor('instance running', () => fakeState(inst!.id) === 'running', 30_000);
    await provider.terminate(s1.runnerId, { graceMs: 5_000 });
    assert.equal(fakeState(inst!.id), 'stopped', 'kept stopped, not terminated');
    assert.equal(await provider.describe(s1.runnerId), undefined);

    const s2 = await spec(warm, { maxLifetime: '1h' });
    const runs = fake.count('RunInstances');
    const { ref } = await provider.create(s2);
    assert.equal(ref.split(':')[1]!.split('@')[0], inst!.id, 'the stopped instance was taken');
    assert.equal(fake.count('RunInstances'), runs, 'no new instance');
    assert.equal(fake.instance(inst!.id).tags.get(TAG.runner), s2.runnerId);
    assert.match(fake.instance(inst!.id).userData, new RegExp(s2.registrationToken), 'the new launch token is in the user data');
    assert.doesNotMatch(fake.instance(inst!.id).userData, new RegExp(s1.registrationToken), 'the spent one is not');
    // the second boot ran the agent again (scripts-user always): the new runner registers
    await waitFor('reused instance registered its new runner', async () => (await t.api('GET', `/api/v1/runners/${s2.runnerId}`)).body.runner?.state === 'idle', 40_000, 200);

    await provider.terminate(s2.runnerId, { graceMs: 5_000 });
    assert.equal(fakeState(inst!.id), 'stopped');
    await provider.poll();
    assert.equal(fakeState(inst!.id), 'stopped', 'young enough: refresh keeps it');
    clock.advance(3_600_000);
    await provider.poll();
    await fake.settle();
    assert.equal(fakeState(inst!.id), 'terminated', 'refresh terminated it past maxLifetime');
  });

  test('a start the moment a released instance is stopped takes it, though the release is still waiting; the release lets go of it', async () => {
    const warm = { warmPool: { stopped: 1 } };
    const s1 = await spec(warm, { maxLifetime: '1h' });
    await provider.create(s1);
    const [inst] = byRunner(s1.runnerId);
    await waitFor('instance running', () => fakeState(inst!.id) === 'running', 30_000);
    const released = provider.terminate(s1.runnerId, { graceMs: 5_000 });
    // sooner than the release's own poll notices the stop
    await waitFor('instance stopped', () => fakeState(inst!.id) === 'stopped', 30_000, 5);
    const s2 = await spec(warm, { maxLifetime: '1h' });
    const runs = fake.count('RunInstances');
    const { ref } = await provider.create(s2);
    assert.equal(ref.split(':')[1]!.split('@')[0], inst!.id, 'the stopped instance was taken, not a new one launched');
    assert.equal(fake.count('RunInstances'), runs, 'no RunInstances');
    await released;
    await waitFor('reused instance registered its new runner', async () => (await t.api('GET', `/api/v1/runners/${s2.runnerId}`)).body.runner?.state === 'idle', 40_000, 200);
    assert.equal(fakeState(inst!.id), 'running', 'the finished release did not stop it again');
    await provider.terminate(s2.runnerId, { graceMs: 5_000 });
  });

  test('StartInstances without capacity falls back to RunInstances', async () => {
    const warm = { warmPool: { stopped: 1 } };
    const s1 = await spec(warm);
    await provider.create(s1);
    const [old] = byRunner(s1.runnerId);
    await provider.terminate(s1.runnerId, { graceMs: 5_000 });
    assert.equal(fakeState(old!.id), 'stopped');
    fake.fail('StartInstances', 'InsufficientInstanceCapacity', 1);
    const s2 = await spec(warm);
    const { ref } = await provider.create(s2);
    assert.notEqual(ref.split(':')[1]!.split('@')[0], old!.id, 'a new instance');
    assert.equal(byRunner(s2.runnerId).length, 1);
    assert.equal(fakeState(old!.id), 'stopped', 'the stopped one stays in the pool');
    await provider.terminate(s2.runnerId, { graceMs: 0 });
  });

  test('an instance failing its status checks is a lost runner: reported and terminated', async () => {
    const s = await spec({});
    await provider.create(s);
    const [i] = byRunner(s.runnerId);
    await waitFor('instance running', () => fakeState(i!.id) === 'running', 30_000);
    fake.impair(i!.id);
    await provider.poll();
    assert.match(exits.find((e) => e.id === s.runnerId)?.detail ?? '', /failed its status checks/);
    await fake.settle();
    assert.equal(fakeState(i!.id), 'terminated');
  });
});

describe('ec2 runners under the scheduler', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({
      config: {
        scheduler: { tick: '1s', offlineAfter: '1h', stuckAfter: '1h', stopGrace: '5s' },
        pools: [
          { name: 'warm', provider: 'ec2', maxRunners: 2, idleTimeout: '2s', ec2: ec2Block({ warmPool: { stopped: 1 } }) },
          { name: 'eph', provider: 'ec2', ephemeral: true, maxRunners: 1, ec2: ec2Block({ warmPool: { stopped: 1 } }) },
          { name: 'old', provider: 'ec2', maxRunners: 1, maxLifetime: '3s', idleTimeout: '1h', ec2: ec2Block({ warmPool: { stopped: 1 } }) },
          { name: 'spot', provider: 'ec2', maxRunners: 1, idleTimeout: '1h', ec2: ec2Block({ spot: true }) },
        ],
      },
    });
  });
  after(() => t.close());

  const poolInstances = (pool: string) => fake.instances().filter((i) => i.tags.get(TAG.pool) === pool && i.tags.get(TAG.instance) === t.server.instanceId);

  test('a job runs on an instance; idle, it is stopped into the pool; the next job starts it again, as a new runner', async () => {
    const { body: a } = await t.api('POST', '/api/v1/jobs', { pool: 'warm', command: 'echo "on-$(cat /var/lib/cloud/fake/instance-id)"' });
    const j1 = await jobDone(t, a.job.id);
    assert.equal(j1.state, 'succeeded', JSON.stringify(j1));
    const [inst] = poolInstances('warm');
    assert.ok(inst);
    const logs = (await t.api('GET', `/api/v1/jobs/${a.job.id}/logs`)).body.lines.map((l: any) => l.m).join('\n');
    assert.match(logs, new RegExp(`on-${inst.id}`), 'the job ran on the instance');
    // the scheduler passed every second while the instance booted and registered: still one
    assert.equal(poolInstances('warm').length, 1, 'no second instance for demand the registering one covered');

    await waitFor('idle runner stopped into the pool', () => fakeState(inst.id) === 'stopped', 40_000, 200);
    const runsBefore = fake.calls.filter((c) => c.action === 'RunInstances' && c.params.get('TagSpecification.1.Tag.3.Value') === 'warm').length;
    const { body: b } = await t.api('POST', '/api/v1/jobs', { pool: 'warm', command: 'echo "again-on-$(cat /var/lib/cloud/fake/instance-id)"' });
    const j2 = await jobDone(t, b.job.id);
    assert.equal(j2.state, 'succeeded', JSON.stringify(j2));
    assert.notEqual(j2.runnerId, j1.runnerId, 'a new runner id');
    const logs2 = (await t.api('GET', `/api/v1/jobs/${b.job.id}/logs`)).body.lines.map((l: any) => l.m).join('\n');
    assert.match(logs2, new RegExp(`again-on-${inst.id}`), 'the same instance, started again');
    assert.equal(poolInstances('warm').length, 1, 'no second instance');
    assert.equal(fake.calls.filter((c) => c.action === 'RunInstances' && c.params.get('TagSpecification.1.Tag.3.Value') === 'warm').length, runsBefore);
    const [r1] = await t.server.db.query<{ state: string }>(`select state from runners where id = $1`, [j1.runnerId]);
    assert.equal(r1!.state, 'terminated', 'the first runner ended when its instance stopped');
  });

  test('an ephemeral runner powers its instance off after its job: back to the pool, reused by the next job', async () => {
    const { body: a } = await t.api('POST', '/api/v1/jobs', { pool: 'eph', command: 'echo one' });
    const j1 = await jobDone(t, a.job.id);
    assert.equal(j1.state, 'succeeded');
    const [inst] = poolInstances('eph');
    await waitFor('the instance shut itself down and stays stopped', async () => fakeState(inst!.id) === 'stopped' && (await t.server.db.query<{ state: string }>(`select state from runners where id = $1`, [j1.runnerId]))[0]?.state === 'terminated', 40_000, 200);
    const { body: b } = await t.api('POST', '/api/v1/jobs', { pool: 'eph', command: 'echo two' });
    const j2 = await jobDone(t, b.job.id);
    assert.equal(j2.state, 'succeeded');
    assert.notEqual(j2.runnerId, j1.runnerId);
    assert.deepEqual(poolInstances('eph').map((i) => i.id), [inst!.id], 'one instance served both');
  });

  test('an instance past maxLifetime whose runner holds a job is not terminated until the job is done', async () => {
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'old', command: 'sleep 6; echo finished-long' });
    await waitFor('job running', async () => (await jobOf(t, body.job.id)).state === 'running', 60_000, 100);
    const [inst] = poolInstances('old');
    const started = Date.now();
    const j = await jobDone(t, body.job.id);
    assert.ok(Date.now() - started > 3_000, 'the job outlived maxLifetime');
    assert.equal(j.state, 'succeeded', 'its instance was not taken away');
    assert.equal(j.attempt ?? 1, 1);
    // drained, then released: too old for the pool, so terminated
    await waitFor('expired instance terminated', () => ['terminated', 'shutting-down'].includes(fakeState(inst!.id)), 40_000, 200);
  });

  test('a spot interruption is a lost runner: its job goes back to the queue, the reason is recorded', async () => {
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'spot', command: 'if [ "$RUNYARD_ATTEMPT" = 1 ]; then sleep 60; fi; echo second-attempt' });
    const running = await waitFor('job running', async () => {
      const j = await jobOf(t, body.job.id);
      return j.state === 'running' ? j : undefined;
    }, 60_000, 100);
    const [inst] = poolInstances('spot');
    assert.ok(inst?.spot, 'a spot instance');
    fake.interruptSpot(inst.id);
    const j = await jobDone(t, body.job.id);
    assert.equal(j.state, 'succeeded', JSON.stringify(j));
    assert.equal(j.attempt, 2, 'retried after the interruption');
    const [r] = await t.server.db.query<{ state: string }>(`select state from runners where id = $1`, [running.runnerId]);
    assert.equal(r!.state, 'terminated');
    const events = (await t.api('GET', `/api/v1/runners/${running.runnerId}`)).body;
    assert.match(JSON.stringify(events), /interrupted \(spot\): Server\.SpotInstanceTermination/);
  });
});

describe('kill -9 of the control plane with ec2 runners', () => {
  let db: { url: string; drop: () => Promise<void> };
  let dataDir = '';
  const servers: ServerProcess[] = [];
  before(async () => {
    db = await createPgDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'runyard-ec2-crash-'));
  });
  after(async () => {
    for (const s of servers) await s.kill9();
    await db.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('restart adopts the instance: its running job finishes once, no second instance', async () => {
    const port = await freePort();
    const yaml = [
      'scheduler: { tick: 1s, offlineAfter: 1h, stuckAfter: 1h }',
      'runner: { heartbeatInterval: 1s }',
      'pools:',
      `  - { name: crash, provider: ec2, maxRunners: 1, idleTimeout: 1h, ec2: ${JSON.stringify(ec2Block({ warmPool: { stopped: 1 } }))} }`,
      '',
    ].join('\n');
    const a = new ServerProcess({ dbUrl: db.url, dataDir, port, yaml });
    servers.push(a);
    await a.start();
    const { job } = await a.api('POST', '/api/v1/jobs', { pool: 'crash', command: 'sleep 4; echo survived the crash' });
    const running = await waitFor('job running', async () => {
      const j = (await a.api('GET', `/api/v1/jobs/${job.id}`)).job;
      return j.state === 'running' ? j : undefined;
    }, 60_000, 100);
    await a.kill9();
    const runs = fake.count('RunInstances');
    const b = new ServerProcess({ dbUrl: db.url, dataDir, port, yaml });
    servers.push(b);
    await b.start();
    const done = await waitFor('job finished after the restart', async () => {
      const j = (await b.api('GET', `/api/v1/jobs/${job.id}`)).job;
      return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
    }, 60_000, 200);
    assert.equal(done.state, 'succeeded', JSON.stringify(done));
    assert.equal(done.attempt ?? 1, 1, 'not retried: the instance was adopted, not replaced');
    assert.equal(done.runnerId, running.runnerId);
    const runner = (await b.api('GET', `/api/v1/runners/${running.runnerId}`)).runner;
    assert.ok(['idle', 'busy'].includes(runner.state), `the runner lives on: ${runner.state}`);
    assert.equal(fake.count('RunInstances'), runs, 'no instance launched after the restart');
    await b.stop();
  });
});

test('no instance container is left behind', async () => {
  for (const i of fake.instances()) if (!['terminated', 'shutting-down'].includes(i.state)) fake.instance(i.id) && (await terminateDirect(i.id));
  await fake.settle();
  assert.deepEqual(fake.instances().filter((i) => i.state !== 'terminated').map((i) => `${i.id}:${i.state}`), []);
  assert.deepEqual(await fake.containers(), [], 'every instance container removed');
});

/** Terminates through the fake's own API, as an operator would with the CLI. */
async function terminateDirect(id: string) {
  const { EC2Client, TerminateInstancesCommand } = await import('@aws-sdk/client-ec2');
  await new EC2Client({ endpoint: fake.url, region: 'us-east-1', credentials: TEST_CREDENTIALS }).send(new TerminateInstancesCommand({ InstanceIds: [id] }));
}
