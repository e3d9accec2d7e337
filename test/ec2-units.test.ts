/*
 * The ec2 provider's pure parts: the pool's ec2 block as config load checks it (each problem
 * naming its field), the warm pool's release and refresh decisions, and the user data document.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, ConfigError } from '../src/config/load.js';
import { releaseDecision, refreshPlan, pickWarm, type PoolInstance } from '../src/providers/ec2/warm-pool.js';
import { userData, USER_DATA_LIMIT } from '../src/providers/ec2/user-data.js';
import { bootScripts } from './helpers/fake-ec2/cloud-init.js';

function problems(pools: unknown[]): string[] {
  try {
    loadConfig({ env: {}, overrides: { pools } });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('the ec2 pool block at config load', () => {
  test('a good block loads with its defaults', () => {
    const c = loadConfig({ env: {}, overrides: { pools: [{ name: 'e', provider: 'ec2', ec2: { region: 'eu-west-1', imageId: 'ami-0123456789abcdef0', instanceType: 't3.micro' } }] } });
    const e = c.pools[0]!.ec2!;
    assert.deepEqual(e.warmPool, { stopped: 0, running: 0 });
    assert.equal(e.pollInterval, 15_000);
    assert.equal(e.spot, false);
  });

  test('every problem names its field', () => {
    const p = problems([
      { name: 'a', provider: 'ec2' },
      { name: 'b', provider: 'ec2', ec2: { region: 'mars', imageId: 'ubuntu', instanceType: 'big', subnets: ['sn-1'], securityGroups: ['default'], bogus: 1 } },
      { name: 'c', provider: 'ec2', ec2: { region: 'us-east-1', instanceType: 't3.micro' } },
      { name: 'd', provider: 'ec2', ec2: { region: 'us-east-1', imageId: 'ami-0123456789abcdef0', spot: true, warmPool: { stopped: 2 } } },
      { name: 'e', provider: 'ec2', class: 'small', ec2: { region: 'us-east-1', imageId: 'ami-0123456789abcdef0', instanceTypes: { medium: ['m5.large'] } } },
      { name: 'f', provider: 'process', ec2: { region: 'us-east-1', imageId: 'ami-0123456789abcdef0', instanceType: 't3.micro' } },
      { name: 'g', provider: 'ec2', maxRunners: 1, ec2: { region: 'us-east-1', launchTemplate: { id: 'lt-0123456789abcdef0', name: 'both' }, warmPool: { running: 2 } } },
    ]);
    const has = (prefix: string, text: RegExp) => assert.ok(p.some((x) => x.startsWith(prefix) && text.test(x)), `${prefix} ${text} missing from:\n${p.join('\n')}`);
    has('pools[0].ec2', /needs an ec2 block/);
    has('pools[1].ec2.region', /AWS region/);
    has('pools[1].ec2.imageId', /AMI id/);
    has('pools[1].ec2.instanceType', /instance type/);
    has('pools[1].ec2.subnets[0]', /subnet id/);
    has('pools[1].ec2.securityGroups[0]', /security group id/);
    has('pools[1].ec2', /bogus/);
    has('pools[2].ec2.imageId', /needs imageId or launchTemplate/);
    has('pools[3].ec2.warmPool.stopped', /spot instance cannot be stopped/);
    has('pools[4].ec2.instanceType', /no instance type for class small/);
    has('pools[5].ec2', /needs provider ec2/);
    has('pools[6].ec2.launchTemplate', /by id or by name/);
    has('pools[6].ec2.warmPool.running', /exceeds maxRunners/);
  });
});

describe('warm pool decisions', () => {
  const now = 1_000_000;
  const inst = (id: string, o: Partial<PoolInstance> = {}): PoolInstance => ({ id, state: 'running', pool: 'p', config: 'c1', createdAt: now - 1000, expiresAt: now + 1000, spot: false, ...o });
  const policy = { pool: 'p', config: 'c1', stopped: 2 };

  test('release stops into the pool while it has room, else terminates, with why', () => {
    assert.equal(releaseDecision(inst('a'), [], policy, now).action, 'stop');
    assert.equal(releaseDecision(inst('a'), [inst('b', { state: 'stopped' })], policy, now).action, 'stop');
    assert.match(releaseDecision(inst('a'), [inst('b', { state: 'stopped' }), inst('c', { state: 'stopping' })], policy, now).reason, /full \(2 of 2/);
    assert.match(releaseDecision(inst('a', { expiresAt: now }), [], policy, now).reason, /maxLifetime/);
    assert.match(releaseDecision(inst('a', { config: 'old' }), [], policy, now).reason, /older pool config/);
    assert.match(releaseDecision(inst('a', { spot: true }), [], policy, now).reason, /spot/);
    assert.equal(releaseDecision(inst('a'), [], undefined, now).action, 'terminate');
    assert.equal(releaseDecision(inst('a'), [], { ...policy, stopped: 0 }, now).action, 'terminate');
  });

  test('refresh terminates expired, stale and surplus stopped instances, never running ones', () => {
    const list = [
      inst('run-old', { expiresAt: now - 1 }),
      inst('s-exp', { state: 'stopped', expiresAt: now - 1, pool: 'unknown-pool' }),
      inst('s-stale', { state: 'stopped', config: 'c0' }),
      inst('s-new', { state: 'stopped', createdAt: now - 10 }),
      inst('s-mid', { state: 'stopped', createdAt: now - 20 }),
      inst('s-oldest', { state: 'stopped', createdAt: now - 30 }),
    ];
    const plan = refreshPlan(list, new Map([['p', policy]]), now);
    assert.deepEqual(plan.map((x) => x.id).sort(), ['s-exp', 's-oldest', 's-stale']);
    assert.deepEqual(pickWarm(list, policy, new Set(['s-new']), now).map((i) => i.id), ['s-mid', 's-oldest'], 'newest first, claimed ones skipped, stale and expired never');
  });
});

describe('runner user data', () => {
  const boot = { serverUrl: 'http://127.0.0.1:8080', registrationToken: "tok'en", runnerId: 'r1', name: 'n', instanceId: 'i', env: { A: 'x y' }, agentDir: '/opt/runyard' };
  test('its script runs at every boot, as cloud-init reads it, and powers off after the agent', () => {
    const doc = userData(boot);
    for (const n of [1, 2, 5]) {
      const scripts = bootScripts(doc, n);
      assert.equal(scripts.length, 1, `boot ${n}`);
      assert.match(scripts[0]!.body, /export RUNYARD_REGISTRATION_TOKEN='tok'\\''en'/);
      assert.match(scripts[0]!.body, /'\/opt\/runyard\/node\/bin\/node' '\/opt\/runyard\/app\/bin\/runyard.js' 'agent'\npoweroff|agent'\necho .*\npoweroff/);
    }
    // without the cloud-config part the script would run at the first boot only
    assert.equal(bootScripts(doc.replace('always', 'once'), 2).length, 0);
  });
  test('too large for EC2 is refused with the reason', () => {
    assert.throws(() => userData({ ...boot, env: { BIG: 'x'.repeat(USER_DATA_LIMIT) } }), /EC2 allows 16384/);
  });
});
