/*
 * The fake ECS endpoint held to contracts written by others: the real SDK (@aws-sdk/client-ecs),
 * the real AWS CLI v2, and differential runs of one call sequence against moto's server with
 * manual state transitions, comparing the response fields runyard reads and the error types.
 * Tasks really run as podman containers. A missing tool (podman, moto_server, aws v2) fails.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ECSClient,
  CreateClusterCommand,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ListTagsForResourceCommand,
  ListTasksCommand,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
  StopTaskCommand,
  TagResourceCommand,
} from '@aws-sdk/client-ecs';
import { EC2Client, CreateSecurityGroupCommand, CreateSubnetCommand, CreateVpcCommand, ModifyVpcAttributeCommand } from '@aws-sdk/client-ec2';
import { startPodman } from './helpers/podman.js';
import { ecsRunnerImage } from './helpers/fake-ecs/runner-image.js';
import { FakeEcs } from './helpers/fake-ecs/fake-ecs.js';
import { TEST_CREDENTIALS } from './helpers/aws/sigv4.js';
import { startMoto, type Moto } from './helpers/aws/moto.js';
import { runAws } from './helpers/aws/cli.js';
import { waitFor } from './helpers/server.js';

const podman = await startPodman();
const runner = ecsRunnerImage(podman);
after(async () => {
  runner.untag();
  await podman.close();
});

const ecsAt = (endpoint: string, creds = TEST_CREDENTIALS) => new ECSClient({ endpoint, region: 'us-east-1', credentials: creds, maxAttempts: 1 });
const errName = async (p: Promise<unknown>) => p.then(() => 'no error', (e: any) => e.name as string);

/** Fargate task definition both moto and the fake accept (moto needs container memory). */
const taskDef = (image: string) => ({
  family: 'runyard-diff',
  requiresCompatibilities: ['FARGATE' as const],
  networkMode: 'awsvpc' as const,
  cpu: '512',
  memory: '1024',
  containerDefinitions: [{ name: 'runner', image, essential: true, memory: 1024, environment: [{ name: 'A', value: '1' }] }],
  tags: [{ key: 'runyard.config-hash', value: 'abc' }],
});

/** The value's type at each path runyard reads, `missing` when absent. */
function shape(v: any, paths: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of paths) {
    let cur = v;
    for (const k of p.split('.')) cur = cur === undefined ? undefined : /^\d+$/.test(k) ? cur[Number(k)] : cur[k];
    out[p] = cur === undefined ? 'missing' : cur instanceof Date ? 'date' : Array.isArray(cur) ? 'array' : typeof cur;
  }
  return out;
}

describe('fake ECS and moto: one call sequence, the same shapes and error types', () => {
  let fake: FakeEcs;
  let moto: Moto;
  let subnet = '';
  let sg = '';
  before(async () => {
    fake = await FakeEcs.start({ socketPath: podman.socket, clusters: [] });
    moto = await startMoto();
    await moto.control('/moto-api/state-manager/set-transition', { model_name: 'ecs::task', transition: { progression: 'manual', times: 1 } });
    const ec2 = new EC2Client({ endpoint: moto.url, region: 'us-east-1', credentials: TEST_CREDENTIALS });
    const vpc = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.0.0.0/16' }));
    await ec2.send(new ModifyVpcAttributeCommand({ VpcId: vpc.Vpc!.VpcId!, EnableDnsHostnames: { Value: true } }));
    subnet = (await ec2.send(new CreateSubnetCommand({ VpcId: vpc.Vpc!.VpcId!, CidrBlock: '10.0.1.0/24' }))).Subnet!.SubnetId!;
    // moto fails (500) on awsvpc without security groups
    sg = (await ec2.send(new CreateSecurityGroupCommand({ VpcId: vpc.Vpc!.VpcId!, GroupName: 'runners', Description: 'runners' }))).GroupId!;
  });
  after(async () => {
    await fake?.close();
    await moto?.close();
  });

  async function sequence(endpoint: string) {
    const ecs = ecsAt(endpoint);
    const r: Record<string, any> = {};
    r.noCluster = await errName(ecs.send(new ListTasksCommand({ cluster: 'nope' })));
    r.cluster = await ecs.send(new CreateClusterCommand({ clusterName: 'diff' }));
    r.noDef = await errName(ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'runyard-missing' })));
    r.register = await ecs.send(new RegisterTaskDefinitionCommand(taskDef('localhost/no-such-image:1')));
    r.describeDef = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'runyard-diff', include: ['TAGS'] }));
    r.run = await ecs.send(
      new RunTaskCommand({
        cluster: 'diff',
        taskDefinition: 'runyard-diff',
        count: 2,
        launchType: 'FARGATE',
        startedBy: 'runyard-diff',
        tags: [{ key: 'runyard.pool', value: 'p' }],
        networkConfiguration: { awsvpcConfiguration: { subnets: [subnet], securityGroups: [sg], assignPublicIp: 'DISABLED' } },
        overrides: { containerOverrides: [{ name: 'runner', environment: [{ name: 'B', value: '2' }] }] },
      }),
    );
    const arns: string[] = r.run.tasks.map((t: any) => t.taskArn);
    r.tag = await ecs.send(new TagResourceCommand({ resourceArn: arns[0], tags: [{ key: 'runyard.runner', value: 'r1' }] }));
    r.tags = await ecs.send(new ListTagsForResourceCommand({ resourceArn: arns[0] }));
    r.list = await ecs.send(new ListTasksCommand({ cluster: 'diff', startedBy: 'runyard-diff' }));
    r.describe = await ecs.send(new DescribeTasksCommand({ cluster: 'diff', tasks: [...arns, `${arns[0]!.replace(/[0-9a-f]{32}$/, '0'.repeat(32))}`], include: ['TAGS'] }));
    r.stop = await ecs.send(new StopTaskCommand({ cluster: 'diff', task: arns[1], reason: 'runyard: test' }));
    r.tooMany = await errName(ecs.send(new RunTaskCommand({ cluster: 'diff', taskDefinition: 'runyard-diff', count: 11, launchType: 'FARGATE', networkConfiguration: { awsvpcConfiguration: { subnets: [subnet], securityGroups: [sg] } } })));
    r.both = await errName(
      ecs.send(new RunTaskCommand({ cluster: 'diff', taskDefinition: 'runyard-diff', launchType: 'FARGATE', capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT' }], networkConfiguration: { awsvpcConfiguration: { subnets: [subnet], securityGroups: [sg] } } })),
    );
    for (const a of arns) await ecs.send(new StopTaskCommand({ cluster: 'diff', task: a })).catch(() => {});
    ecs.destroy();
    return r;
  }

  test('response fields runyard reads and error types agree', async () => {
    const ours = await sequence(fake.url);
    const theirs = await sequence(moto.url);
    for (const k of ['noCluster', 'noDef']) assert.equal(ours[k], theirs[k], `error type of ${k}`);
    assert.equal(ours.noCluster, 'ClusterNotFoundException');
    assert.equal(ours.noDef, 'ClientException');
    // moto accepts what ECS refuses here (count 11, launch type with a strategy): the fake follows ECS
    assert.equal(ours.tooMany, 'InvalidParameterException');
    assert.equal(ours.both, 'InvalidParameterException');
    const reads: Record<string, string[]> = {
      register: ['taskDefinition.taskDefinitionArn', 'taskDefinition.family', 'taskDefinition.revision', 'taskDefinition.status', 'taskDefinition.containerDefinitions.0.name'],
      describeDef: ['taskDefinition.taskDefinitionArn', 'taskDefinition.status', 'tags.0.key', 'tags.0.value'],
      // (moto leaves createdAt out of RunTask's answer, ECS does not; runyard copes with both)
      run: ['tasks.0.taskArn', 'tasks.0.lastStatus', 'tasks.0.desiredStatus', 'tasks.1.taskArn', 'failures'],
      tags: ['tags'],
      list: ['taskArns.0', 'taskArns.1'],
      // moto also leaves unknown tasks out without ECS's MISSING failure: checked on the fake alone below
      describe: ['tasks.0.taskArn', 'tasks.0.lastStatus', 'tasks.0.desiredStatus', 'tasks.0.tags', 'tasks.0.group', 'tasks.0.containers.0.name', 'tasks.1.taskArn', 'failures'],
      stop: ['task.taskArn', 'task.desiredStatus'],
    };
    for (const [op, paths] of Object.entries(reads)) assert.deepEqual(shape(ours[op], paths), shape(theirs[op], paths), `shape of ${op}`);
    assert.equal(ours.describe.failures[0].reason, 'MISSING');
    assert.ok(ours.describe.tasks[0].createdAt instanceof Date);
    for (const r of [ours, theirs]) {
      assert.equal(r.stop.task.desiredStatus, 'STOPPED');
      assert.equal(r.run.tasks.length, 2);
      assert.deepEqual(r.describeDef.tags, [{ key: 'runyard.config-hash', value: 'abc' }]);
      assert.ok(r.tags.tags.some((t: any) => t.key === 'runyard.runner' && t.value === 'r1'), 'TagResource then ListTagsForResource');
      assert.equal(r.list.taskArns.length, 2);
    }
  });

  test('the SDK is refused with a wrong key, with the AWS error type', async () => {
    const wrong = ecsAt(fake.url, { ...TEST_CREDENTIALS, secretAccessKey: 'wrong' });
    assert.equal(await errName(wrong.send(new ListTasksCommand({}))), 'InvalidSignatureException');
    const stranger = ecsAt(fake.url, { accessKeyId: 'AKIDSTRANGER', secretAccessKey: 'x' });
    assert.equal(await errName(stranger.send(new ListTasksCommand({}))), 'UnrecognizedClientException');
  });
});

describe('fake ECS tasks run as podman containers', () => {
  let fake: FakeEcs;
  let ecs: ECSClient;
  before(async () => {
    fake = await FakeEcs.start({ socketPath: podman.socket, clusters: ['default'] });
    ecs = ecsAt(fake.url);
  });
  after(async () => {
    ecs.destroy();
    await fake.close();
    assert.deepEqual(await fake.leftovers(), [], 'no task container left');
  });
  // after every test: no task still running, no task container left
  afterEach(() => fake.assertNothingLeft());

  const run = async (image: string) => {
    await ecs.send(new RegisterTaskDefinitionCommand({ ...taskDef(image), family: 'life' }));
    const r = await ecs.send(new RunTaskCommand({ taskDefinition: 'life', launchType: 'FARGATE', networkConfiguration: { awsvpcConfiguration: { subnets: ['subnet-0123abcd'] } } }));
    return r.tasks![0]!;
  };
  const describe1 = async (arn: string) => (await ecs.send(new DescribeTasksCommand({ tasks: [arn] }))).tasks![0]!;

  test('PROVISIONING → PENDING → RUNNING → STOPPED with the exit code; the container is removed', async () => {
    const t = await run(runner.image);
    assert.equal(t.lastStatus, 'PROVISIONING');
    const seen = new Set<string>();
    // the agent without a server to reach exits by itself: the essential container ended
    const end = await waitFor('task stopped', async () => {
      const d = await describe1(t.taskArn!);
      seen.add(d.lastStatus!);
      return d.lastStatus === 'STOPPED' ? d : undefined;
    }, 30_000, 20);
    assert.ok(seen.has('RUNNING') || end.startedAt, `it ran (${[...seen].join(', ')})`);
    assert.equal(end.stopCode, 'EssentialContainerExited');
    assert.notEqual(end.containers?.[0]?.exitCode, 0);
    await waitFor('container removed', async () => (await fake.leftovers()).length === 0, 10_000);
  });

  test('an image the engine lacks stops the task as TaskFailedToStart with CannotPullContainerError', async () => {
    const t = await run('localhost/runyard-no-such-image:1');
    const end = await waitFor('task stopped', async () => ((await describe1(t.taskArn!)).lastStatus === 'STOPPED' ? describe1(t.taskArn!) : undefined), 15_000);
    assert.equal(end.stopCode, 'TaskFailedToStart');
    assert.match(end.stoppedReason!, /^CannotPullContainerError/);
  });

  test('the real AWS CLI v2 registers, runs, describes and stops a task; errors carry ECS types', async () => {
    const def = await runAws(fake.url, ['ecs', 'register-task-definition', '--cli-input-json', JSON.stringify({ ...taskDef('localhost/runyard-no-such-image:1'), family: 'cli' })]);
    assert.equal(def.status, 0, def.stderr);
    assert.equal(def.json().taskDefinition.revision, 1);
    const ran = await runAws(fake.url, ['ecs', 'run-task', '--task-definition', 'cli', '--count', '2', '--launch-type', 'FARGATE', '--started-by', 'cli-test', '--network-configuration', 'awsvpcConfiguration={subnets=[subnet-0123abcd]}']);
    assert.equal(ran.status, 0, ran.stderr);
    const arns = ran.json().tasks.map((t: any) => t.taskArn);
    assert.equal(arns.length, 2);
    // the image is missing, so they may have stopped already: running and stopped lists cover both
    const listed = await runAws(fake.url, ['ecs', 'list-tasks', '--started-by', 'cli-test']);
    const listedStopped = await runAws(fake.url, ['ecs', 'list-tasks', '--started-by', 'cli-test', '--desired-status', 'STOPPED']);
    assert.deepEqual([...listed.json().taskArns, ...listedStopped.json().taskArns].sort(), [...arns].sort());
    const described = await runAws(fake.url, ['ecs', 'describe-tasks', '--tasks', ...arns]);
    assert.equal(described.json().tasks.length, 2);
    const stopped = await runAws(fake.url, ['ecs', 'stop-task', '--task', arns[0], '--reason', 'cli says stop']);
    assert.equal(stopped.json().task.desiredStatus, 'STOPPED');
    const missing = await runAws(fake.url, ['ecs', 'describe-task-definition', '--task-definition', 'nope']);
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /ClientException/);
    fake.inject({ op: 'ListTasks', error: { type: 'ThrottlingException', message: 'Rate exceeded' }, times: 10 });
    const throttled = await runAws(fake.url, ['ecs', 'list-tasks']);
    assert.notEqual(throttled.status, 0);
    assert.match(throttled.stderr, /ThrottlingException/);
  });

  test('task metadata (v4) shows the task its tags', async () => {
    const t = await run('localhost/runyard-no-such-image:1');
    await ecs.send(new TagResourceCommand({ resourceArn: t.taskArn!, tags: [{ key: 'runyard.runner', value: 'abc' }] }));
    const id = t.taskArn!.split('/').pop();
    const meta = await (await fetch(`${fake.url}/v4/${id}/taskWithTags`)).json();
    assert.equal(meta.TaskARN, t.taskArn);
    assert.equal(meta.TaskTags['runyard.runner'], 'abc');
  });
});
