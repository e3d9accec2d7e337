/*
 * The fake EC2 endpoint held to its real contracts: the real SDK and the real AWS CLI v2 read its
 * answers (shapes, state codes, XML errors, pagination, SigV4), a differential run against moto's
 * server compares shapes, state codes and errors call by call, and its instances (podman
 * containers) boot their user data the way cloud-init does: once per instance, or at every boot
 * when the cloud-config asks for it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import {
  EC2Client,
  RunInstancesCommand,
  DescribeInstancesCommand,
  StopInstancesCommand,
  StartInstancesCommand,
  TerminateInstancesCommand,
  CreateTagsCommand,
  ModifyInstanceAttributeCommand,
  DescribeInstanceStatusCommand,
  DescribeImagesCommand,
  paginateDescribeInstances,
  type Instance,
} from '@aws-sdk/client-ec2';
import { startPodman } from './helpers/podman.js';
import { FakeEc2 } from './helpers/fake-ec2/fake-ec2.js';
import { TEST_CREDENTIALS } from './helpers/aws/sigv4.js';
import { startMoto, type Moto } from './helpers/aws/moto.js';
import { runAws } from './helpers/aws/cli.js';
import { waitFor } from './helpers/server.js';
import { userData } from '../src/providers/ec2/user-data.js';

const AMI = 'ami-0f00dfeed0000c0de';
const podman = await startPodman();
const fake = await new FakeEc2({ dockerHost: podman.host, amis: { [AMI]: podman.image }, stopTimeoutSec: 5 }).start();
after(async () => {
  await fake.close();
  assert.deepEqual(await fake.containers(), [], 'no instance container left');
  await podman.close();
});

const client = (endpoint: string, creds = TEST_CREDENTIALS) => new EC2Client({ endpoint, region: 'us-east-1', credentials: creds, maxAttempts: 1 });
const ec2 = client(fake.url);
const b64 = (s: string) => Buffer.from(s).toString('base64');
const errorOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: any) => e.name as string);
async function stateOf(c: EC2Client, id: string): Promise<string> {
  const d = await c.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
  return d.Reservations![0]!.Instances![0]!.State!.Name!;
}
const settled = (c: EC2Client, id: string, state: string) => waitFor(`${id} ${state}`, async () => (await stateOf(c, id)) === state, 30_000, 100);
const bootLog = (id: string) => {
  const f = `${fake.instanceDir(id)}/boots.log`;
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n') : [];
};

describe('the fake EC2 answers the real SDK', () => {
  test('RunInstances with tags, user data and a ClientToken; asked again with the token, the same instance', async () => {
    const input = { ImageId: AMI, InstanceType: 't3.micro' as const, MinCount: 1, MaxCount: 1, ClientToken: 'sdk-token-1', UserData: b64('#!/bin/sh\necho first >> /var/lib/cloud/fake/boots.log\n'), TagSpecifications: [{ ResourceType: 'instance' as const, Tags: [{ Key: 'suite', Value: 'sdk' }] }] };
    const r = await ec2.send(new RunInstancesCommand(input));
    const i = r.Instances![0]!;
    assert.deepEqual(i.State, { Code: 0, Name: 'pending' });
    assert.match(i.InstanceId!, /^i-[0-9a-f]{17}$/);
    assert.deepEqual(i.Tags, [{ Key: 'suite', Value: 'sdk' }]);
    const again = await ec2.send(new RunInstancesCommand(input));
    assert.equal(again.Instances![0]!.InstanceId, i.InstanceId, 'idempotent');
    assert.equal(await errorOf(ec2.send(new RunInstancesCommand({ ...input, InstanceType: 't3.small' }))), 'IdempotentParameterMismatch');
    await settled(ec2, i.InstanceId!, 'running');
    await waitFor('user data ran at first boot', () => bootLog(i.InstanceId!).length === 1, 20_000);
    // a plain script is per-instance: a second boot does not run it again
    await ec2.send(new StopInstancesCommand({ InstanceIds: [i.InstanceId!] }));
    await settled(ec2, i.InstanceId!, 'stopped');
    await ec2.send(new StartInstancesCommand({ InstanceIds: [i.InstanceId!] }));
    await settled(ec2, i.InstanceId!, 'running');
    await fake.settle();
    assert.equal(fake.instance(i.InstanceId!).boots, 2);
    assert.deepEqual(bootLog(i.InstanceId!), ['first'], 'per-instance script ran once');
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [i.InstanceId!] }));
  });

  test('the provider\'s multipart user data runs at every boot, with what ModifyInstanceAttribute set while stopped; stop keeps the filesystem', async () => {
    const doc = (n: string) =>
      userData({ serverUrl: 'http://127.0.0.1:9', registrationToken: `token-${n}`, runnerId: '00000000-0000-4000-8000-00000000000' + n, name: `r${n}`, instanceId: 'x', env: {}, agentDir: '/nonexistent' }).replace(
        "'/nonexistent/node/lib/ld.so'",
        `[ -f /tmp/kept ] && echo "kept" >> /var/lib/cloud/fake/boots.log; echo "$RUNYARD_REGISTRATION_TOKEN" >> /var/lib/cloud/fake/boots.log; echo x > /tmp/kept; true`,
      );
    const r = await ec2.send(new RunInstancesCommand({ ImageId: AMI, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1, UserData: b64(doc('1')) }));
    const id = r.Instances![0]!.InstanceId!;
    // the script powers off when its "agent" returns: the instance stops by itself
    await settled(ec2, id, 'stopped');
    const d = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
    assert.equal(d.Reservations![0]!.Instances![0]!.StateReason?.Code, 'Client.InstanceInitiatedShutdown');
    assert.equal(await errorOf(ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, UserData: { Value: Buffer.from('not base64!') } }))), 'InvalidUserData.Malformed');
    await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, UserData: { Value: Buffer.from(b64(doc('2'))) } }));
    await ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    await waitFor('second boot ran the new user data', () => bootLog(id).includes('token-2'), 30_000);
    assert.deepEqual(bootLog(id), ['token-1', 'kept', 'token-2'], 'both boots ran the script; the file from the first boot survived the stop');
    await settled(ec2, id, 'stopped');
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
  });

  test('DescribeInstances filters (tag:, instance-state-name, wildcards) and pages with MaxResults/NextToken', async () => {
    const r = await ec2.send(new RunInstancesCommand({ ImageId: AMI, InstanceType: 't3.micro', MinCount: 6, MaxCount: 6, TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'batch', Value: 'paged-1' }] }] }));
    const ids = r.Instances!.map((i) => i.InstanceId!).sort();
    await ec2.send(new CreateTagsCommand({ Resources: [ids[0]!], Tags: [{ Key: 'odd', Value: 'one' }] }));
    const pages: Instance[][] = [];
    for await (const p of paginateDescribeInstances({ client: ec2, pageSize: 5 }, { Filters: [{ Name: 'tag:batch', Values: ['paged-*'] }] })) pages.push(p.Reservations!.flatMap((x) => x.Instances!));
    assert.deepEqual(pages.map((p) => p.length), [5, 1]);
    assert.deepEqual(pages.flat().map((i) => i.InstanceId).sort(), ids);
    const odd = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:odd', Values: ['one'] }, { Name: 'instance-state-name', Values: ['pending', 'running'] }] }));
    assert.deepEqual(odd.Reservations!.flatMap((x) => x.Instances!).map((i) => i.InstanceId), [ids[0]]);
    assert.equal(await errorOf(ec2.send(new DescribeInstancesCommand({ MaxResults: 3 }))), 'InvalidParameterValue');
    assert.equal(await errorOf(ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'bogus-filter', Values: ['x'] }] }))), 'InvalidParameterValue');
    const t = await ec2.send(new TerminateInstancesCommand({ InstanceIds: ids }));
    assert.deepEqual(new Set(t.TerminatingInstances!.map((x) => x.CurrentState!.Code)), new Set([32]));
    await fake.settle();
    const gone = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:batch', Values: ['paged-1'] }, { Name: 'instance-state-code', Values: ['48'] }] }));
    assert.equal(gone.Reservations!.flatMap((x) => x.Instances!).length, 6, 'terminated, still listed (as EC2 keeps them for a while)');
  });

  test('errors are XML errors the SDK maps to their codes; a wrong key is AuthFailure; injected failures', async () => {
    assert.equal(await errorOf(ec2.send(new StopInstancesCommand({ InstanceIds: ['i-0123456789abcdef0'] }))), 'InvalidInstanceID.NotFound');
    assert.equal(await errorOf(ec2.send(new StopInstancesCommand({ InstanceIds: ['nope'] }))), 'InvalidInstanceID.Malformed');
    assert.equal(await errorOf(ec2.send(new RunInstancesCommand({ ImageId: 'ami-00000000000000000', MinCount: 1, MaxCount: 1 }))), 'InvalidAMIID.NotFound');
    assert.equal(await errorOf(client(fake.url, { ...TEST_CREDENTIALS, secretAccessKey: 'wrong' }).send(new DescribeInstancesCommand({}))), 'AuthFailure');
    const r = await ec2.send(new RunInstancesCommand({ ImageId: AMI, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1 }));
    const id = r.Instances![0]!.InstanceId!;
    await settled(ec2, id, 'running');
    assert.equal(await errorOf(ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, UserData: { Value: Buffer.from(b64('x')) } }))), 'IncorrectInstanceState');
    fake.impair(id);
    const st = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));
    assert.equal(st.InstanceStatuses![0]!.InstanceStatus!.Status, 'impaired');
    fake.fail('DescribeInstances', 'RequestLimitExceeded');
    const throttled = await ec2.send(new DescribeInstancesCommand({})).catch((e) => e);
    assert.equal(throttled.name, 'RequestLimitExceeded');
    assert.equal(throttled.$metadata.httpStatusCode, 503);
    fake.exhaustCapacity({ type: 't3.small' });
    const ice = await ec2.send(new RunInstancesCommand({ ImageId: AMI, InstanceType: 't3.small', MinCount: 1, MaxCount: 1 })).catch((e) => e);
    fake.restoreCapacity();
    assert.equal(ice.name, 'InsufficientInstanceCapacity');
    assert.equal(ice.$metadata.httpStatusCode, 500, 'a server error, as EC2 answers it');
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    await fake.settle();
    assert.equal(await errorOf(ec2.send(new StartInstancesCommand({ InstanceIds: [id] }))), 'IncorrectInstanceState');
    const raw = await fetch(fake.url, { method: 'POST', body: 'Action=DescribeInstances&Version=2016-11-15' });
    assert.equal(raw.status, 401);
    assert.match(await raw.text(), /<Response><Errors><Error><Code>MissingAuthenticationToken<\/Code>/);
  });

  test('a spot interruption terminates the instance with the spot reason', async () => {
    const r = await ec2.send(new RunInstancesCommand({ ImageId: AMI, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1, InstanceInitiatedShutdownBehavior: 'terminate', InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time' } } }));
    const id = r.Instances![0]!.InstanceId!;
    assert.equal(await errorOf(ec2.send(new RunInstancesCommand({ ImageId: AMI, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1, InstanceMarketOptions: { MarketType: 'spot' } }))), 'InvalidParameterCombination', 'one-time spot cannot stop on shutdown');
    await settled(ec2, id, 'running');
    assert.equal(await errorOf(ec2.send(new StopInstancesCommand({ InstanceIds: [id] }))), 'UnsupportedOperation');
    fake.interruptSpot(id);
    await settled(ec2, id, 'terminated');
    const d = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
    assert.equal(d.Reservations![0]!.Instances![0]!.StateReason?.Code, 'Server.SpotInstanceTermination');
    assert.equal(d.Reservations![0]!.Instances![0]!.InstanceLifecycle, 'spot');
  });
});

describe('the fake EC2 answers the real AWS CLI v2', () => {
  test('run, describe with filters and pages, stop, modify user data, start, terminate; errors exit non-zero with the code', async () => {
    const run = await runAws(fake.url, ['ec2', 'run-instances', '--image-id', AMI, '--instance-type', 't3.micro', '--count', '2', '--tag-specifications', 'ResourceType=instance,Tags=[{Key=suite,Value=cli}]']);
    assert.equal(run.status, 0, run.stderr);
    const ids: string[] = run.json().Instances.map((i: any) => i.InstanceId);
    assert.equal(ids.length, 2);
    const desc = await runAws(fake.url, ['ec2', 'describe-instances', '--filters', 'Name=tag:suite,Values=cli', '--page-size', '5']);
    assert.equal(desc.status, 0, desc.stderr);
    assert.deepEqual(desc.json().Reservations.flatMap((r: any) => r.Instances.map((i: any) => i.InstanceId)).sort(), [...ids].sort());
    for (const id of ids) await settled(ec2, id, 'running');
    const stop = await runAws(fake.url, ['ec2', 'stop-instances', '--instance-ids', ids[0]!]);
    assert.equal(stop.status, 0, stop.stderr);
    assert.deepEqual(stop.json().StoppingInstances[0].CurrentState, { Code: 64, Name: 'stopping' });
    await settled(ec2, ids[0]!, 'stopped');
    const file = `${fake.instanceDir(ids[0]!)}/../cli-user-data.b64`;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, b64('#!/bin/sh\necho from-cli\n'));
    const mod = await runAws(fake.url, ['ec2', 'modify-instance-attribute', '--instance-id', ids[0]!, '--attribute', 'userData', '--value', `file://${file}`]);
    assert.equal(mod.status, 0, mod.stderr);
    const attr = await runAws(fake.url, ['ec2', 'describe-instance-attribute', '--instance-id', ids[0]!, '--attribute', 'userData']);
    assert.equal(attr.status, 0, attr.stderr);
    assert.equal(Buffer.from(attr.json().UserData.Value, 'base64').toString(), '#!/bin/sh\necho from-cli\n');
    const start = await runAws(fake.url, ['ec2', 'start-instances', '--instance-ids', ids[0]!]);
    assert.deepEqual(start.json().StartingInstances[0].PreviousState, { Code: 80, Name: 'stopped' });
    const term = await runAws(fake.url, ['ec2', 'terminate-instances', '--instance-ids', ...ids]);
    assert.equal(term.status, 0, term.stderr);
    const bad = await runAws(fake.url, ['ec2', 'stop-instances', '--instance-ids', 'i-0123456789abcdef0']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /InvalidInstanceID\.NotFound/);
    await fake.settle();
  });
});

describe('differential run: the fake and moto', () => {
  let moto: Moto;
  before(async () => (moto = await startMoto()));
  after(() => moto?.close());

  /** The same calls against one endpoint; what they answered, reduced to what must agree. */
  async function script(c: EC2Client, ami: string) {
    const out: Record<string, unknown> = {};
    const r = await c.send(new RunInstancesCommand({ ImageId: ami, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1, ClientToken: `diff-${ami}`, TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'diff', Value: 'yes' }] }] }));
    const id = r.Instances![0]!.InstanceId!;
    out.run = r.Instances![0]!.State;
    await settled(c, id, 'running');
    const d = (await c.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:diff', Values: ['yes'] }, { Name: 'instance-state-name', Values: ['running'] }] }))).Reservations!.flatMap((x) => x.Instances!);
    out.described = d.map((i) => ({ state: i.State, type: i.InstanceType, tags: i.Tags, image: i.ImageId === ami }));
    out.keys = Object.keys(d[0]!).sort();
    const s = await c.send(new StopInstancesCommand({ InstanceIds: [id] }));
    out.stop = { current: s.StoppingInstances![0]!.CurrentState, previous: s.StoppingInstances![0]!.PreviousState };
    await settled(c, id, 'stopped');
    const stopped = (await c.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;
    out.stoppedReason = stopped.StateReason;
    out.transition = stopped.StateTransitionReason?.replace(/\(.*\)/, '(time)').replace(/ UTC| GMT/, '');
    out.modifyPlain = await errorOf(c.send(new ModifyInstanceAttributeCommand({ InstanceId: id, UserData: { Value: Buffer.from('#!/bin/sh') } })));
    out.modify = await errorOf(c.send(new ModifyInstanceAttributeCommand({ InstanceId: id, UserData: { Value: Buffer.from(b64('#!/bin/sh\n')) } })));
    const st = await c.send(new StartInstancesCommand({ InstanceIds: [id] }));
    out.start = { current: st.StartingInstances![0]!.CurrentState, previous: st.StartingInstances![0]!.PreviousState };
    await settled(c, id, 'running');
    const t = await c.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    out.terminate = { current: t.TerminatingInstances![0]!.CurrentState, previous: t.TerminatingInstances![0]!.PreviousState };
    await settled(c, id, 'terminated');
    out.notFound = await errorOf(c.send(new StopInstancesCommand({ InstanceIds: ['i-0123456789abcdef0'] })));
    out.tagNotFound = await errorOf(c.send(new CreateTagsCommand({ Resources: ['i-0123456789abcdef0'], Tags: [{ Key: 'k', Value: 'v' }] })));
    return out;
  }

  test('the same calls give the same state codes, reasons, shapes and errors', async () => {
    const m = client(moto.url);
    const motoAmi = (await m.send(new DescribeImagesCommand({ Owners: ['amazon'] }))).Images![0]!.ImageId!;
    const ours = await script(ec2, AMI);
    const theirs = await script(m, motoAmi);
    for (const key of ['run', 'described', 'stop', 'stoppedReason', 'transition', 'modifyPlain', 'modify', 'start', 'terminate', 'notFound'] as const)
      assert.deepEqual(ours[key], theirs[key], `${key}: fake ${JSON.stringify(ours[key])} vs moto ${JSON.stringify(theirs[key])}`);
    // every field the fake returns, moto returns too (moto returns more: network interfaces, block devices)
    const extra = (ours.keys as string[]).filter((k) => !(theirs.keys as string[]).includes(k));
    assert.deepEqual(extra, [], `fields only the fake has: ${extra.join(', ')}`);
    // Where moto is not EC2, the fake follows EC2: tagging an unknown instance fails there (moto accepts it).
    assert.equal(ours.tagNotFound, 'InvalidInstanceID.NotFound');
  });
});
