/*
 * The ecs provider through the real SDK against the fake ECS endpoint, whose tasks are podman
 * containers running the agent: the provider contract, jobs in tasks under the scheduler (warm
 * reuse, batches of RunTask, scale to zero), every launch failure ECS reports, a spot
 * interruption, a kill -9 of the control plane and its restart, and service mode. No task
 * container may be left behind.
 */
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { providerContract } from './helpers/provider-contract.js';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { startPodman } from './helpers/podman.js';
import { ecsRunnerImage } from './helpers/fake-ecs/runner-image.js';
import { FakeEcs } from './helpers/fake-ecs/fake-ecs.js';
import { TEST_CREDENTIALS } from './helpers/aws/sigv4.js';
import { ServerProcess, freePort } from './helpers/process-server.js';
import { createPgDatabase } from './helpers/db.js';
import { EcsProvider } from '../src/providers/ecs/ecs-provider.js';
import { ecsPoolFields } from '../src/providers/ecs/pool-config.js';
import { configSchema } from '../src/config/schema.js';
import { silentLogger } from '../src/lib/logger.js';
import { apiCallsMetric, metricValue } from './helpers/metrics.js';
import * as tar from 'tar';

// The provider takes the SDK's default credential chain: here, the environment.
process.env.AWS_ACCESS_KEY_ID = TEST_CREDENTIALS.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDENTIALS.secretAccessKey;
process.env.AWS_EC2_METADATA_DISABLED = 'true';
process.env.RUNYARD_ECS_POLL = '250';

const podman = await startPodman();
const runner = ecsRunnerImage(podman);
// other worktrees' test runs may remove the image from the shared podman store: put it back first
beforeEach(() => runner.ensure());
const fake = await FakeEcs.start({ socketPath: podman.socket, clusters: ['default', 'runners'] });
// every test stops what it started: no task running, no task container left
afterEach(() => fake.assertNothingLeft());
after(async () => {
  // every test stops what it started: no task container may be left
  const left = await waitFor('no task container left', async () => ((await fake.leftovers()).length === 0 ? [] : undefined), 60_000, 200).catch(async () => fake.leftovers());
  await fake.close();
  runner.untag();
  await podman.close();
  assert.deepEqual(left, [], 'task containers left behind');
});

const ecsBlock = (extra: Record<string, unknown> = {}) => ({ endpoint: fake.url, region: 'us-east-1', cluster: 'runners', subnets: ['subnet-0000000a', 'subnet-0000000b'], securityGroups: ['sg-0000000a'], ...extra });

test('config load checks class sizes against Fargate and names the field', () => {
  const bad = configSchema.safeParse({ classSizes: { odd: { cpu: 1, memoryMb: 1000 } }, pools: [{ name: 'f', provider: 'ecs', image: 'x', class: 'odd', ecs: { subnets: ['subnet-0000000a'] } }] });
  assert.equal(bad.success, false);
  const issue = bad.error!.issues.find((i) => i.path.join('.') === 'pools.0.class');
  assert.match(issue?.message ?? '', /Fargate runs 1 vCPU with 2048-8192 MiB/);
  assert.equal(configSchema.safeParse({ pools: [{ name: 'f', provider: 'ecs', image: 'x', class: 'medium', ecs: { subnets: ['subnet-0000000a'] } }] }).success, true);
  // EC2 capacity takes any size
  assert.equal(configSchema.safeParse({ classSizes: { odd: { cpu: 1, memoryMb: 1000 } }, pools: [{ name: 'f', provider: 'ecs', image: 'x', class: 'odd', ecs: { launchType: 'EC2' } }] }).success, true);
  const noSubnet = ecsPoolFields.safeParse({ launchType: 'FARGATE' });
  assert.equal(noSubnet.error?.issues[0]?.path.join('.'), 'subnets');
  const both = ecsPoolFields.safeParse({ launchType: 'FARGATE', capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT' }], subnets: ['subnet-0000000a'] });
  assert.equal(both.error?.issues[0]?.path.join('.'), 'capacityProviderStrategy');
});

providerContract('ecs', {
  make: (t) => new EcsProvider({ instanceId: t.server.instanceId, log: silentLogger, pollMs: 250, pools: [{ name: 'contract', fields: ecsPoolFields.parse(ecsBlock()) }] }),
  poolOverrides: { provider: 'ecs', image: runner.image, ecs: ecsBlock() },
});

const live = (t: TestServer, pool: string) => t.server.db.query<{ id: string; state: string }>(`select id, state from runners where pool = $1 and state <> 'terminated'`, [pool]);
const jobOf = async (t: TestServer, id: number) => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;
/** Waits for the job to succeed; a timeout says what its pool's runners and events were. */
const succeeded = async (t: TestServer, id: number, ms = 60_000) => {
  try {
    return await waitFor(`job ${id} succeeded`, async () => {
      const j = await jobOf(t, id);
      assert.ok(!['failed', 'cancelled', 'timed_out'].includes(j.state), `job ${j.state}: ${JSON.stringify(j)}`);
      return j.state === 'succeeded' ? j : undefined;
    }, ms, 100);
  } catch (err) {
    const j = await jobOf(t, id);
    const runners = await t.server.db.query(`select id, state, created_at from runners where pool = $1 order by created_at desc limit 5`, [j.pool]);
    const events = await t.server.db.query(`select e.subject, e.to_state, e.reason from events e where e.kind in ('runner', 'scheduler') order by e.id desc limit 12`);
    throw new Error(`${(err as Error).message}; job ${JSON.stringify(j)}; runners ${JSON.stringify(runners)}; events ${JSON.stringify(events)}`);
  }
};
const runTasksOf = (pool: string) => fake.calls.filter((c) => c.op === 'RunTask' && c.input.tags?.some((t: any) => t.key === 'runyard.pool' && t.value === pool));
const liveTasks = (pool: string) => [...fake.tasks.values()].filter((t) => t.lastStatus !== 'STOPPED' && t.tags.some((x) => x.key === 'runyard.pool' && x.value === pool));
const terminatedReasons = async (t: TestServer, pool: string) =>
  (await t.server.db.query<{ reason: string }>(`select e.reason from events e join runners r on r.id::text = e.subject where r.pool = $1 and e.kind = 'runner' order by e.id`, [pool])).map((r) => r.reason ?? '');

describe('ECS runners under the scheduler', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({
      config: {
        scheduler: { tick: '1s', offlineAfter: '1h', stuckAfter: '1h', stopGrace: '3s' },
        pools: [
          { name: 'warm', provider: 'ecs', image: runner.image, class: 'small', maxRunners: 1, maxJobsPerRunner: 2, idleTimeout: '3s', ecs: ecsBlock() },
          { name: 'burst', provider: 'ecs', image: runner.image, maxRunners: 12, ephemeral: true, idleTimeout: '2s', ecs: ecsBlock() },
          { name: 'rolling', provider: 'ecs', image: runner.image, maxRunners: 1, idleTimeout: '1h', ecs: ecsBlock() },
          // one pool per failure: a pool's backoff grows with its streak of failed starts
          ...['flaky-0', 'flaky-1', 'flaky-2', 'flaky-3', 'flaky-4', 'flaky-t', 'flaky-s'].map((name) => ({ name, provider: 'ecs', image: runner.image, maxRunners: 1, ephemeral: true, startTimeout: '3m', ecs: ecsBlock() })),
          { name: 'nopull', provider: 'ecs', image: 'localhost/runyard-no-such-image:1', maxRunners: 1, ecs: ecsBlock() },
          { name: 'spot', provider: 'ecs', image: runner.image, maxRunners: 1, ephemeral: true, ecs: ecsBlock({ capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT' }] }) },
        ],
      },
    });
  });
  after(() => t.close());

  test('a job scales from zero into a task, a second one reuses the warm task, idle scales back to zero; /metrics counts the ECS calls', async () => {
    assert.equal(liveTasks('warm').length, 0);
    const runTasks = () => apiCallsMetric(t, 'ecs', 'RunTask');
    const runTasksBefore = await runTasks();
    const cmd = 'echo "meta=${ECS_CONTAINER_METADATA_URI_V4:+set}"; echo "job-$RUNYARD_JOB_ID"';
    const { body: first } = await t.api('POST', '/api/v1/jobs', { pool: 'warm', command: cmd });
    const j1 = await succeeded(t, first.job.id);
    const logs = JSON.stringify((await t.api('GET', `/api/v1/jobs/${first.job.id}/logs`)).body.lines);
    assert.match(logs, /meta=set/, 'the job ran inside an ECS task');
    const { body: second } = await t.api('POST', '/api/v1/jobs', { pool: 'warm', command: cmd });
    const j2 = await succeeded(t, second.job.id);
    assert.equal(j2.runnerId, j1.runnerId, 'the warm task took the second job');
    const calls = runTasksOf('warm');
    assert.equal(calls.length, 1, 'one RunTask for both jobs');
    assert.equal(await runTasks(), runTasksBefore + 1, 'runyard_provider_api_calls_total{provider="ecs",operation="RunTask"} moved by one');
    assert.ok((await apiCallsMetric(t, 'ecs', 'DescribeTasks')) >= 1, 'the tracking calls are counted too');
    const run = calls[0]!.input;
    assert.equal(run.startedBy, `runyard-${t.server.instanceId}`);
    assert.equal(run.count, 1);
    assert.ok(run.clientToken, 'idempotent launch');
    assert.deepEqual(run.tags.map((x: any) => x.key).sort(), ['runyard.instance', 'runyard.pool', 'runyard.runner']);
    const env = Object.fromEntries(run.overrides.containerOverrides[0].environment.map((e: any) => [e.name, e.value]));
    assert.equal(env.RUNYARD_RUNNER_ID, j1.runnerId);
    assert.match(env.RUNYARD_REGISTRATION_TOKEN, /^ryd_reg_/);
    const defs = fake.calls.filter((c) => c.op === 'RegisterTaskDefinition' && c.input.family === 'runyard-warm');
    assert.equal(defs.length, 1, 'the task definition registered once');
    assert.equal(defs[0]!.input.cpu, '512');
    assert.equal(defs[0]!.input.memory, '1024');
    assert.ok(defs[0]!.input.tags.some((x: any) => x.key === 'runyard.config-hash'));
    const [row] = await t.server.db.query<{ provider_ref: string }>(`select provider_ref from runners where id = $1`, [j1.runnerId]);
    assert.match(row!.provider_ref, /^ecs:runners\/[0-9a-f]{32}@[0-9a-f]{12}$/);

    await waitFor('scaled to zero', async () => (await live(t, 'warm')).length === 0, 40_000, 200);
    await waitFor('its task stopped', () => liveTasks('warm').length === 0, 30_000, 200);
    const task = [...fake.tasks.values()].find((x) => x.tags.some((g) => g.key === 'runyard.runner' && g.value === j1.runnerId))!;
    assert.equal(task.lastStatus, 'STOPPED');
  });

  test('a warm task running several jobs fetches the pool distribution once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runyard-ecs-dist-'));
    try {
      writeFileSync(join(dir, 'tool.txt'), 'tool from the distribution\n');
      await tar.c({ gzip: true, file: join(dir, 'tool.tar.gz'), cwd: dir }, ['tool.txt']);
      const push = await fetch(`${t.url}/api/v1/artifacts?name=tool.tar.gz`, { method: 'POST', headers: { authorization: `Bearer ${t.token}` }, body: readFileSync(join(dir, 'tool.tar.gz')) });
      assert.equal(push.status, 201, await push.text());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const pool = await t.api('POST', '/api/v1/pools', { name: 'warmdist', provider: 'ecs', image: runner.image, maxRunners: 1, maxJobsPerRunner: 2, idleTimeout: '3s', distribution: 'tool.tar.gz', ecs: ecsBlock() });
    assert.ok(pool.status < 300, JSON.stringify(pool.body));
    const downloads = () => metricValue(t, 'runyard_http_request_duration_seconds_count', { method: 'GET', route: '/api/v1/artifacts/:ref', status: '200' });
    const before = await downloads();
    const cmd = 'cat tool.txt; echo "job-$RUNYARD_JOB_ID"';
    const { body: first } = await t.api('POST', '/api/v1/jobs', { pool: 'warmdist', command: cmd });
    const j1 = await succeeded(t, first.job.id);
    // two more at once: the warm task's two slots
    const { body: more } = await t.api('POST', '/api/v1/jobs/batch', { jobs: [{ pool: 'warmdist', command: cmd }, { pool: 'warmdist', command: cmd }] });
    const rest = await Promise.all(more.jobs.map((j: { id: number }) => succeeded(t, j.id)));
    for (const j of [j1, ...rest]) {
      assert.equal(j.runnerId, j1.runnerId, 'the warm task ran every job');
      const lines = (await t.api('GET', `/api/v1/jobs/${j.id}/logs`)).body.lines.map((l: { m: string }) => l.m);
      assert.ok(lines.includes('tool from the distribution'), `job ${j.id} had the distribution in its workdir: ${JSON.stringify(lines)}`);
    }
    assert.equal(runTasksOf('warmdist').length, 1, 'one task');
    assert.equal((await downloads()) - before, 1, 'the distribution was fetched once for three jobs');
    await waitFor('scaled to zero', async () => (await live(t, 'warmdist')).length === 0, 40_000, 200);
    await waitFor('its task stopped', () => liveTasks('warmdist').length === 0, 30_000, 200);
  });

  test('a burst of 12 jobs launches in two RunTask calls (10 + 2); batch tasks learn their runner from their tags', async () => {
    // one batch of jobs: one scheduler pass asks for 12 runners at once
    const { body: batchBody } = await t.api('POST', '/api/v1/jobs/batch', { jobs: Array.from({ length: 12 }, (_, i) => ({ pool: 'burst', command: `echo burst-${i}` })) });
    const ids: number[] = batchBody.jobs.map((j: any) => j.id);
    const jobs = await Promise.all(ids.map((id) => succeeded(t, id, 120_000)));
    assert.equal(new Set(jobs.map((j) => j.runnerId)).size, 12, 'twelve runners');
    const calls = runTasksOf('burst');
    assert.deepEqual(calls.map((c) => c.input.count).sort((a, b) => b - a), [10, 2]);
    const batch = calls.find((c) => c.input.count === 10)!.input;
    const env = Object.fromEntries(batch.overrides.containerOverrides[0].environment.map((e: any) => [e.name, e.value]));
    assert.equal(env.RUNYARD_RUNNER_IDENTITY, 'ecs-task-tags');
    assert.equal(env.RUNYARD_LAUNCH_TOKENS.split(',').length, 10);
    assert.equal(fake.count('TagResource') >= 12, true, 'every batch task tagged with its runner');
    await waitFor('burst tasks all ended', () => liveTasks('burst').length === 0, 60_000, 200);
  });

  test('a changed pool config drains the warm task and replaces it from a new task definition', async () => {
    const pool = { name: 'rolling', provider: 'ecs', image: runner.image, maxRunners: 1, idleTimeout: '1h', ecs: ecsBlock() };
    const j1 = await succeeded(t, (await t.api('POST', '/api/v1/jobs', { pool: 'rolling', command: 'echo "roll=$ROLL"' })).body.job.id);
    const changed = await t.api('PUT', '/api/v1/pools/rolling', { ...pool, env: { ROLL: '2' } });
    assert.equal(changed.body.pool.configChanged, true);
    const j2 = await succeeded(t, (await t.api('POST', '/api/v1/jobs', { pool: 'rolling', command: 'echo "roll=$ROLL"' })).body.job.id, 90_000);
    assert.notEqual(j2.runnerId, j1.runnerId, 'a new task took the job after the change');
    assert.match(JSON.stringify((await t.api('GET', `/api/v1/jobs/${j2.id}/logs`)).body.lines), /roll=2/);
    const defs = fake.calls.filter((c) => c.op === 'RegisterTaskDefinition' && c.input.family === 'runyard-rolling');
    assert.equal(defs.length, 2, 'one task definition per config hash');
    assert.notEqual(defs[0]!.input.tags.find((x: any) => x.key === 'runyard.config-hash').value, defs[1]!.input.tags.find((x: any) => x.key === 'runyard.config-hash').value);
    const old = [...fake.tasks.values()].find((x) => x.tags.some((g) => g.key === 'runyard.runner' && g.value === j1.runnerId))!;
    await waitFor('the old task stopped', () => old.lastStatus === 'STOPPED', 60_000, 200);
    // scale the pool away so no task outlives the test
    await t.api('PUT', '/api/v1/pools/rolling', { ...pool, env: { ROLL: '2' }, idleTimeout: '1s' });
    await waitFor('rolling tasks ended', () => liveTasks('rolling').length === 0, 60_000, 200);
  });

  for (const [i, [reason, detail]] of ([
    ['RESOURCE:CPU', undefined],
    ['RESOURCE:MEMORY', undefined],
    ['RESOURCE:ENI', 'ENI limit reached'],
    ['AGENT', undefined],
    ['Capacity is unavailable at this time. Please try again later or in a different availability zone', undefined],
  ] as const).entries()) {
    const flaky = `flaky-${i}`;
    test(`RunTask failure ${reason.split('.')[0]}: a start failure with the reason, backoff, the next subnet, then the job runs`, async () => {
      const before = runTasksOf(flaky).length;
      fake.inject({ op: 'RunTask', failure: { reason, ...(detail ? { detail } : {}) } });
      const { body } = await t.api('POST', '/api/v1/jobs', { pool: flaky, command: 'echo placed' });
      await succeeded(t, body.job.id, 90_000);
      const calls = runTasksOf(flaky).slice(before);
      assert.equal(calls.length, 2, 'the failed call and the one after the backoff');
      const subnet = (c: (typeof calls)[number]) => c.input.networkConfiguration.awsvpcConfiguration.subnets[0];
      assert.notEqual(subnet(calls[1]!), subnet(calls[0]!), 'the next subnet was tried');
      assert.ok(calls[1]!.at - calls[0]!.at >= 4_000, `backed off (${Math.round(calls[1]!.at - calls[0]!.at)} ms)`);
      const reasons = await terminatedReasons(t, flaky);
      assert.ok(reasons.some((r) => r.includes(`ECS could not place the task: ${reason}`)), `the reason was recorded: ${JSON.stringify(reasons.slice(-3))}`);
      await waitFor('its task ended', () => liveTasks(flaky).length === 0, 60_000, 200);
    });
  }

  test('ThrottlingException: RunTask backs off and retries with the same clientToken; one task starts', async () => {
    const before = runTasksOf('flaky-t').length;
    const tasksBefore = fake.tasks.size;
    fake.inject({ op: 'RunTask', error: { type: 'ThrottlingException', message: 'Rate exceeded' }, times: 3 });
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'flaky-t', command: 'echo after-throttle' });
    await succeeded(t, body.job.id, 60_000);
    // throttled calls carry no tags in the log (they failed before), so count every RunTask since
    const calls = fake.calls.filter((c) => c.op === 'RunTask').slice(-4);
    assert.equal(new Set(calls.map((c) => c.input.clientToken)).size, 1, 'the same clientToken on each try');
    assert.equal(calls.length, 4);
    assert.equal(runTasksOf('flaky-t').length - before, 4);
    assert.equal(fake.tasks.size - tasksBefore, 1, 'one task, not four');
    await waitFor('its task ended', () => liveTasks('flaky-t').length === 0, 60_000, 200);
  });

  test('TaskFailedToStart: the start fails with ECS reason and the pool backs off instead of looping', async () => {
    fake.inject({ op: 'StartTask', stop: { stopCode: 'TaskFailedToStart', stoppedReason: 'ResourceInitializationError: unable to pull secrets or registry auth' } });
    const before = runTasksOf('flaky-s').length;
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'flaky-s', command: 'echo second-try' });
    await succeeded(t, body.job.id, 90_000);
    assert.equal(runTasksOf('flaky-s').length - before, 2, 'one failed task, one after the backoff');
    const reasons = await terminatedReasons(t, 'flaky-s');
    assert.ok(reasons.some((r) => /ECS task failed to start \(ResourceInitializationError/.test(r)), JSON.stringify(reasons.slice(-3)));
    await waitFor('its task ended', () => liveTasks('flaky-s').length === 0, 60_000, 200);
  });

  test('CannotPullContainerError: start failures with the reason, backing off (no loop)', async () => {
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'nopull', command: 'true' });
    const reasons = await waitFor('a failed start recorded', async () => {
      const r = await terminatedReasons(t, 'nopull');
      return r.some((x) => x.includes('CannotPullContainerError')) ? r : undefined;
    }, 30_000, 200);
    assert.ok(reasons.some((r) => /ECS task failed to start \(CannotPullContainerError/.test(r)));
    const first = runTasksOf('nopull')[0]!.at;
    // give it 8 s: a loop would launch every tick (1 s); backoff allows 5 s, then 10 s
    await waitFor('eight seconds of backoff', () => performance.now() - first > 8_000, 15_000, 200);
    assert.ok(runTasksOf('nopull').length <= 2, `${runTasksOf('nopull').length} launches in 8 s`);
    assert.equal((await jobOf(t, body.job.id)).state, 'queued', 'the job waits');
    assert.equal((await t.api('POST', `/api/v1/jobs/${body.job.id}/cancel`)).status, 200);
  });

  test('SpotInterruption: the runner is lost, its job goes back to the queue and runs again, "spot interruption" recorded', async () => {
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'spot', command: 'if [ ! -f /tmp/spot-marker ]; then touch /tmp/spot-marker; sleep 60; fi; echo done' });
    const running = await waitFor('job running', async () => {
      const j = await jobOf(t, body.job.id);
      return j.state === 'running' ? j : undefined;
    }, 60_000, 100);
    const run = runTasksOf('spot').at(-1)!.input;
    assert.deepEqual(run.capacityProviderStrategy, [{ capacityProvider: 'FARGATE_SPOT', weight: 1, base: 0 }]);
    const task = liveTasks('spot')[0]!;
    await fake.interrupt(task.arn);
    const requeued = await waitFor('job requeued and run again', async () => {
      const j = await jobOf(t, body.job.id);
      return j.attempt >= 2 ? j : undefined;
    }, 60_000, 100);
    assert.notEqual(requeued.runnerId, running.runnerId);
    const reasons = await terminatedReasons(t, 'spot');
    assert.ok(reasons.some((r) => /spot interruption/.test(r)), JSON.stringify(reasons));
    await t.api('POST', `/api/v1/jobs/${body.job.id}/cancel`);
    await waitFor('spot tasks ended', () => liveTasks('spot').length === 0, 60_000, 200);
  });
});

describe('service mode', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({
      config: {
        scheduler: { tick: '1s', offlineAfter: '1h', stuckAfter: '1h', stopGrace: '3s' },
        pools: [{ name: 'svc', provider: 'ecs', image: runner.image, maxRunners: 3, idleTimeout: '3s', ecs: ecsBlock({ mode: 'service' }) }],
      },
    });
  });
  after(() => t.close());

  test('one ECS service per pool scales 0 → 3 → 0 with the plan', async () => {
    const desired = () => fake.calls.filter((c) => (c.op === 'UpdateService' || c.op === 'CreateService') && c.input.desiredCount !== undefined).map((c) => c.input.desiredCount);
    const ids: number[] = [];
    // each job lasts long enough for the third task to come up on a busy machine: one task per job
    for (let i = 0; i < 3; i++) ids.push((await t.api('POST', '/api/v1/jobs', { pool: 'svc', command: 'sleep 5; echo svc' })).body.job.id);
    const jobs = await Promise.all(ids.map((id) => succeeded(t, id, 90_000)));
    assert.equal(new Set(jobs.map((j) => j.runnerId)).size, 3, 'three service tasks ran the jobs');
    assert.equal(fake.count('CreateService'), 1);
    assert.equal(Math.max(...desired()), 3);
    await waitFor('scaled to zero', async () => (await live(t, 'svc')).length === 0, 60_000, 200);
    await waitFor('desired count 0', () => desired().at(-1) === 0, 30_000, 200);
    await waitFor('service tasks ended', () => liveTasks('svc').length === 0 && ![...fake.tasks.values()].some((x) => x.service && x.lastStatus !== 'STOPPED'), 60_000, 200);
  });
});

describe('control plane killed with -9, then restarted', () => {
  let db: { url: string; drop: () => Promise<void> };
  let dataDir = '';
  const servers: ServerProcess[] = [];
  before(async () => {
    db = await createPgDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'runyard-ecs-crash-'));
  });
  after(async () => {
    for (const s of servers) await s.kill9();
    for (const task of fake.tasks.values()) if (task.tags.some((x) => x.key === 'runyard.pool' && x.value === 'crash') && task.lastStatus !== 'STOPPED') await fake.interrupt(task.arn);
    await db.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('restart adopts the running task: its job finishes once, no new task is launched', async () => {
    const port = await freePort();
    const yaml = [
      'scheduler: { tick: 1s, offlineAfter: 1h, stuckAfter: 1h }',
      'runner: { heartbeatInterval: 1s }',
      'pools:',
      `  - { name: crash, provider: ecs, image: ${JSON.stringify(runner.image)}, minIdle: 1, maxRunners: 1, idleTimeout: 1h, ecs: ${JSON.stringify(ecsBlock())} }`,
      '',
    ].join('\n');
    const env = { AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey, RUNYARD_ECS_POLL: '250' };
    const a = new ServerProcess({ dbUrl: db.url, dataDir, port, yaml, env });
    servers.push(a);
    await a.start();
    const warm = await waitFor('a warm task runner', async () => {
      const rs = (await a.api('GET', '/api/v1/runners')).runners;
      return rs.length === 1 && rs[0].state === 'idle' ? rs[0] : undefined;
    }, 60_000, 200);
    const { job } = await a.api('POST', '/api/v1/jobs', { pool: 'crash', command: 'sleep 2; echo survived the crash' });
    await waitFor('job running', async () => (await a.api('GET', `/api/v1/jobs/${job.id}`)).job.state === 'running', 30_000, 50);
    await a.kill9();
    const launches = runTasksOf('crash').length;

    const b = new ServerProcess({ dbUrl: db.url, dataDir, port, yaml, env });
    servers.push(b);
    await b.start();
    const done = await waitFor('the job finished', async () => {
      const j = (await b.api('GET', `/api/v1/jobs/${job.id}`)).job;
      return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
    }, 60_000, 100);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.attempt, 1, 'run once: not requeued while its task lived');
    assert.equal(done.runnerId, warm.id);
    assert.ok(fake.calls.some((c) => c.op === 'ListTasks' && c.input.startedBy?.startsWith('runyard-')), 'found by ListTasks on startedBy');
    const { job: next } = await b.api('POST', '/api/v1/jobs', { pool: 'crash', command: 'echo adopted' });
    await waitFor('next job on the adopted runner', async () => ((await b.api('GET', `/api/v1/jobs/${next.id}`)).job.runnerId === warm.id ? true : undefined), 60_000, 100);
    assert.equal(runTasksOf('crash').length, launches, 'no new task launched');
    // scale the pool away: the adopted task is stopped through ECS
    await b.api('PUT', '/api/v1/pools/crash', { name: 'crash', provider: 'ecs', image: runner.image, minIdle: 0, maxRunners: 1, idleTimeout: '1s', ecs: ecsBlock() }).catch(() => {});
    await waitFor('the adopted task stopped', () => liveTasks('crash').length === 0, 60_000, 200).catch(() => {});
    await b.stop();
  });
});
