/*
 * A fake EC2 endpoint on loopback, for the ec2 provider's tests: the query protocol (form POST
 * `Action=…&Version=2016-11-15`), XML responses and `<Response><Errors>` errors, SigV4 checked
 * against the test credentials. Instances are podman containers (instances.ts). Failures are
 * injected by the test: throttling (RequestLimitExceeded), capacity per subnet and instance type
 * (InsufficientInstanceCapacity), a response lost after the work was done, spot interruptions,
 * failing status checks. Held to the real SDK, the real AWS CLI v2 and moto (test/fake-ec2.test.ts).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { verifySigV4 } from '../aws/sigv4.js';
import { QueryParams, matchesWildcard } from './query.js';
import { errorXml, responseXml, Ec2Error, type XmlValue } from './xml.js';
import { InstanceStore, STATE_CODES, newId, type Instance, type StateName } from './instances.js';

export interface FakeEc2Options {
  /** podman's Docker API, unix:///path */
  dockerHost: string;
  /** AMI id → local image, e.g. { 'ami-0runyard0000000001': podman.image } */
  amis: Record<string, string>;
  region?: string;
  /** instance types RunInstances accepts */
  instanceTypes?: string[];
  /** subnet id → availability zone; the first is the default subnet */
  subnets?: Record<string, string>;
  launchTemplates?: Record<string, { name: string; imageId: string; instanceType: string }>;
  stopTimeoutSec?: number;
}

export interface Call {
  action: string;
  params: URLSearchParams;
  error?: string;
}

interface Fault {
  action: string;
  code: string;
  message: string;
  status: number;
  remaining: number;
  when?: (p: QueryParams) => boolean;
}

const OWNER_ID = '123456789012';
const isBase64 = (s: string) => /^[A-Za-z0-9+/]*={0,2}$/.test(s.replace(/\s+/g, '')) && s.replace(/\s+/g, '').length % 4 === 0;
const ACTIONS = ['RunInstances', 'DescribeInstances', 'StartInstances', 'StopInstances', 'TerminateInstances', 'CreateTags', 'DeleteTags', 'DescribeInstanceStatus', 'ModifyInstanceAttribute', 'DescribeInstanceAttribute'] as const;

export class FakeEc2 {
  url = '';
  readonly calls: Call[] = [];
  readonly label: string;
  private server?: Server;
  private store: InstanceStore;
  private dir: string;
  private faults: Fault[] = [];
  private drops = new Map<string, number>();
  private noCapacity: { subnet?: string; type?: string }[] = [];
  private reservations = new Map<string, { token: string; fingerprint: string; reservationId: string; ids: string[] }>();
  readonly region: string;
  private types: Set<string>;
  private subnets: Record<string, string>;
  private amiImages: Record<string, string> = {};

  constructor(private opts: FakeEc2Options) {
    this.region = opts.region ?? 'us-east-1';
    this.types = new Set(opts.instanceTypes ?? ['t3.micro', 't3.small', 't3.medium', 't3a.small', 'm5.large', 'c5.large']);
    this.subnets = opts.subnets ?? { 'subnet-0aaaaaaaaaaaaaaa1': `${this.region}a`, 'subnet-0bbbbbbbbbbbbbbb2': `${this.region}b` };
    this.dir = mkdtempSync(join(tmpdir(), 'fake-ec2-'));
    this.label = `fake-ec2.of=${process.pid}-${Date.now().toString(36)}`;
    const socketPath = opts.dockerHost.replace(/^unix:\/\//, '');
    this.store = new InstanceStore({ docker: new Docker({ socketPath }), amis: this.amiImages, dir: this.dir, label: this.label, stopTimeoutSec: opts.stopTimeoutSec ?? 30 });
  }

  async start(): Promise<this> {
    // Each AMI gets a tag of this fake's own: other test runs on the machine prune older tags of
    // the runner image's repository, and an image with another name left is only untagged.
    const docker = new Docker({ socketPath: this.opts.dockerHost.replace(/^unix:\/\//, '') });
    for (const [ami, image] of Object.entries(this.opts.amis)) {
      const tag = `${ami}-${this.label.replace(/[^a-z0-9]/g, '')}`;
      await docker.getImage(image).tag({ repo: 'localhost/fake-ec2-ami', tag });
      this.amiImages[ami] = `localhost/fake-ec2-ami:${tag}`;
    }
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((ok) => this.server!.listen(0, '127.0.0.1', ok));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
    return this;
  }

  // ---- what tests inject -------------------------------------------------------------------

  /** The next `count` calls of `action` (that match `when`) fail with `code`. */
  fail(action: string, code: string, count = 1, opts: { message?: string; status?: number; when?: (p: QueryParams) => boolean } = {}) {
    const status = opts.status ?? (code === 'RequestLimitExceeded' ? 503 : code === 'InsufficientInstanceCapacity' ? 500 : 400);
    this.faults.push({ action, code, message: opts.message ?? `${code} (injected)`, status, remaining: count, when: opts.when });
  }

  /** No capacity for this subnet and/or instance type until `restoreCapacity`. */
  exhaustCapacity(where: { subnet?: string; type?: string }) {
    this.noCapacity.push(where);
  }
  restoreCapacity() {
    this.noCapacity = [];
  }

  /** The next `count` calls of `action` do their work, then the connection drops without an answer. */
  dropResponse(action: string, count = 1) {
    this.drops.set(action, (this.drops.get(action) ?? 0) + count);
  }

  /**
   * EC2 reclaims a spot instance: it is terminated (or stopped) with the spot reason. Modelled as
   * the end of the two-minute notice: the machine goes away at once, its processes get no signal.
   */
  interruptSpot(id: string, action: 'terminate' | 'stop' = 'terminate') {
    const i = this.store.get(id);
    if (!i.spot) throw new Error(`${id} is not a spot instance`);
    if (action === 'terminate') this.store.terminate(i, { code: 'Server.SpotInstanceTermination', message: 'Server.SpotInstanceTermination: Spot instance termination' }, true);
    else this.store.stop(i, true, { code: 'Server.SpotInstanceShutdown', message: 'Server.SpotInstanceShutdown: Spot instance shutdown' });
  }

  /** The instance's status checks fail (DescribeInstanceStatus reports impaired). */
  impair(id: string) {
    this.store.get(id).impaired = true;
  }

  /** The host folder an instance sees as /var/lib/cloud/fake (its metadata and boot scripts). */
  instanceDir(id: string): string {
    return join(this.dir, this.store.get(id).id);
  }

  instances(): Instance[] {
    return [...this.store.all.values()];
  }
  instance(id: string): Instance {
    return this.store.get(id);
  }
  count(action: string): number {
    return this.calls.filter((c) => c.action === action && !c.error).length;
  }
  settle(): Promise<void> {
    return this.store.settle();
  }

  /** Container ids of this fake's instances that still exist on the engine. */
  async containers(): Promise<string[]> {
    const docker = new Docker({ socketPath: this.opts.dockerHost.replace(/^unix:\/\//, '') });
    return (await docker.listContainers({ all: true, filters: { label: [this.label] } })).map((c) => c.Id);
  }

  async close(): Promise<void> {
    await new Promise<void>((ok) => (this.server ? this.server.close(() => ok()) : ok()));
    this.server?.closeAllConnections();
    await this.store.removeAll();
    const docker = new Docker({ socketPath: this.opts.dockerHost.replace(/^unix:\/\//, '') });
    for (const image of Object.values(this.amiImages)) await docker.getImage(image).remove().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- the protocol ------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const send = (status: number, xml: string) => {
      res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': 'fake' });
      res.end(xml);
    };
    const form = new URLSearchParams(req.method === 'POST' ? body.toString('utf8') : new URL(req.url ?? '/', 'http://x').search);
    const action = form.get('Action') ?? '';
    const call: Call = { action, params: form };
    this.calls.push(call);
    try {
      const auth = verifySigV4({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body }, undefined, { mismatchCode: 'AuthFailure' });
      if (!auth.ok) {
        const code = auth.code === 'UnrecognizedClientException' ? 'AuthFailure' : auth.code;
        throw new Ec2Error(code, code === 'AuthFailure' ? 'AWS was not able to validate the provided access credentials' : auth.message, code === 'MissingAuthenticationToken' ? 401 : 401);
      }
      if (auth.service !== 'ec2') throw new Ec2Error('AuthFailure', `Credential should be scoped to correct service: 'ec2'.`, 401);
      if (!action) throw new Ec2Error('MissingAction', 'The request must contain the parameter Action');
      if (!(ACTIONS as readonly string[]).includes(action)) throw new Ec2Error('InvalidAction', `The action ${action} is not valid for this web service.`);
      if (form.get('Version') !== '2016-11-15') throw new Ec2Error('InvalidParameterValue', `Invalid API version ${form.get('Version')}`);
      const p = new QueryParams(form);
      const fault = this.faults.find((f) => f.action === action && f.remaining > 0 && (!f.when || f.when(p)));
      if (fault) {
        fault.remaining -= 1;
        throw new Ec2Error(fault.code, fault.message, fault.status);
      }
      await this.store.sync();
      const result = await this.dispatch(action, p);
      const drop = this.drops.get(action) ?? 0;
      if (drop > 0) {
        this.drops.set(action, drop - 1);
        call.error = 'dropped';
        req.socket.destroy();
        return;
      }
      send(200, responseXml(action, result));
    } catch (err) {
      const e = err instanceof Ec2Error ? err : new Ec2Error('InternalError', `An internal error has occurred: ${(err as Error).message}`, 500);
      call.error = e.code;
      send(e.status, errorXml(e.code, e.message));
    }
  }

  private dispatch(action: string, p: QueryParams): Promise<Record<string, XmlValue>> | Record<string, XmlValue> {
    switch (action) {
      case 'RunInstances':
        return this.runInstances(p);
      case 'DescribeInstances':
        return this.describeInstances(p);
      case 'StartInstances':
        return this.changeStates(p, (i) => this.store.start(i));
      case 'StopInstances':
        return this.changeStates(p, (i) => this.store.stop(i, p.get('Force') === 'true'));
      case 'TerminateInstances':
        return this.changeStates(p, (i) => this.store.terminate(i));
      case 'CreateTags':
      case 'DeleteTags':
        return this.tags(p, action === 'CreateTags');
      case 'DescribeInstanceStatus':
        return this.describeStatus(p);
      case 'ModifyInstanceAttribute':
        return this.modifyAttribute(p);
      default:
        return this.describeAttribute(p);
    }
  }

  private async runInstances(p: QueryParams): Promise<Record<string, XmlValue>> {
    const min = Number(p.get('MinCount'));
    const max = Number(p.get('MaxCount'));
    if (!p.get('MinCount')) throw new Ec2Error('MissingParameter', 'The request must contain the parameter MinCount');
    if (!p.get('MaxCount')) throw new Ec2Error('MissingParameter', 'The request must contain the parameter MaxCount');
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max < min)
      throw new Ec2Error('InvalidParameterValue', `Invalid value for MinCount/MaxCount: ${p.get('MinCount')}/${p.get('MaxCount')}`);
    const token = p.get('ClientToken') ?? '';
    if (token.length > 64) throw new Ec2Error('InvalidParameterValue', 'Value for parameter ClientToken is invalid: it is longer than 64 characters');
    const fingerprint = p.fingerprint(['ClientToken', 'Action', 'Version']);
    if (token) {
      const seen = this.reservations.get(token);
      if (seen) {
        if (seen.fingerprint !== fingerprint) throw new Ec2Error('IdempotentParameterMismatch', `Arguments on this idempotent request are inconsistent with arguments used in previous request(s).`);
        return this.reservationXml(seen.reservationId, seen.ids.map((id) => this.store.get(id)));
      }
    }
    let imageId = p.get('ImageId');
    let instanceType = p.get('InstanceType');
    const ltId = p.get('LaunchTemplate.LaunchTemplateId');
    const ltName = p.get('LaunchTemplate.LaunchTemplateName');
    if (ltId || ltName) {
      const entry = Object.entries(this.opts.launchTemplates ?? {}).find(([id, t]) => id === ltId || t.name === ltName);
      if (!entry)
        throw new Ec2Error(ltId ? 'InvalidLaunchTemplateId.NotFound' : 'InvalidLaunchTemplateName.NotFoundException', ltId ? `The specified launch template, with template ID ${ltId}, does not exist.` : `The specified launch template, with template name ${ltName}, does not exist.`);
      imageId ??= entry[1].imageId;
      instanceType ??= entry[1].instanceType;
    }
    if (!imageId) throw new Ec2Error('MissingParameter', 'The request must contain the parameter ImageId');
    if (!/^ami-[0-9a-f]{8,17}$/.test(imageId)) throw new Ec2Error('InvalidAMIID.Malformed', `Invalid id: "${imageId}" (expecting "ami-...")`);
    if (!this.opts.amis[imageId]) throw new Ec2Error('InvalidAMIID.NotFound', `The image id '[${imageId}]' does not exist`);
    instanceType ??= 'm1.small';
    if (!this.types.has(instanceType)) throw new Ec2Error('InvalidParameterValue', `Invalid value '${instanceType}' for InstanceType.`);
    const subnetId = p.get('SubnetId') ?? Object.keys(this.subnets)[0]!;
    const az = this.subnets[subnetId];
    if (!az) throw new Ec2Error('InvalidSubnetID.NotFound', `The subnet ID '${subnetId}' does not exist`);
    if (this.noCapacity.some((c) => (!c.subnet || c.subnet === subnetId) && (!c.type || c.type === instanceType)))
      throw new Ec2Error('InsufficientInstanceCapacity', `We currently do not have sufficient ${instanceType} capacity in the Availability Zone you requested (${az}). Our system will be working on provisioning additional capacity. You can currently get ${instanceType} capacity by not specifying an Availability Zone in your request or choosing a different Availability Zone.`, 500);
    let userData = '';
    const b64 = p.get('UserData');
    if (b64 !== undefined) {
      if (!isBase64(b64)) throw new Ec2Error('InvalidUserData.Malformed', 'Invalid BASE64 encoding of user data.');
      userData = Buffer.from(b64, 'base64').toString('utf8');
      if (Buffer.byteLength(b64) > 16 * 1024 * 4 / 3 + 4) throw new Ec2Error('InvalidParameterValue', 'User data is limited to 16384 bytes');
    }
    const market = p.get('InstanceMarketOptions.MarketType');
    if (market && market !== 'spot' && market !== 'capacity-block') throw new Ec2Error('InvalidParameterValue', `Invalid value '${market}' for MarketType`);
    const behavior = p.get('InstanceInitiatedShutdownBehavior') ?? 'stop';
    if (behavior !== 'stop' && behavior !== 'terminate') throw new Ec2Error('InvalidParameterValue', `Invalid value '${behavior}' for InstanceInitiatedShutdownBehavior`);
    if (market === 'spot' && behavior === 'stop' && p.get('InstanceMarketOptions.SpotOptions.SpotInstanceType') !== 'persistent')
      throw new Ec2Error('InvalidParameterCombination', 'The parameter InstanceInitiatedShutdownBehavior with value stop is not supported for one-time Spot Instance requests.');
    const tags = new Map<string, string>();
    for (const spec of p.members('TagSpecification')) {
      const type = spec.get('ResourceType');
      if (type !== 'instance' && type !== 'volume' && type !== 'network-interface') throw new Ec2Error('InvalidParameterValue', `'${type}' is not a valid taggable resource type for this operation.`);
      if (type === 'instance') for (const t of spec.tags()) tags.set(t.key, t.value);
    }
    const reservationId = newId('r');
    const created: Instance[] = [];
    for (let n = 0; n < max; n++) {
      const i: Instance = {
        id: newId('i'),
        reservationId,
        imageId,
        instanceType,
        subnetId,
        availabilityZone: az,
        launchTime: new Date(),
        state: 'pending',
        reason: '',
        tags: new Map(tags),
        userData,
        clientToken: token,
        spot: market === 'spot',
        shutdownBehavior: behavior,
        iamInstanceProfile: p.get('IamInstanceProfile.Arn') ?? p.get('IamInstanceProfile.Name'),
        securityGroups: p.list('SecurityGroupId'),
        boots: 0,
        impaired: false,
      };
      await this.store.launch(i);
      created.push(i);
    }
    if (token) this.reservations.set(token, { token, fingerprint, reservationId, ids: created.map((i) => i.id) });
    return this.reservationXml(reservationId, created);
  }

  private reservationXml(reservationId: string, list: Instance[]): Record<string, XmlValue> {
    return { reservationId, ownerId: OWNER_ID, groupSet: [], instancesSet: list.map((i) => this.instanceXml(i)) };
  }

  private instanceXml(i: Instance): XmlValue {
    return {
      instanceId: i.id,
      imageId: i.imageId,
      instanceState: { code: STATE_CODES[i.state], name: i.state },
      privateDnsName: i.state === 'terminated' ? '' : `ip-10-0-0-${(parseInt(i.id.slice(-2), 16) % 250) + 1}.ec2.internal`,
      reason: i.reason,
      amiLaunchIndex: 0,
      instanceType: i.instanceType,
      launchTime: i.launchTime.toISOString(),
      placement: { availabilityZone: i.availabilityZone, groupName: '', tenancy: 'default' },
      monitoring: { state: 'disabled' },
      subnetId: i.state === 'terminated' ? undefined : i.subnetId,
      vpcId: i.state === 'terminated' ? undefined : 'vpc-0fa4e000000000001',
      clientToken: i.clientToken,
      groupSet: i.securityGroups.map((g) => ({ groupId: g, groupName: g })),
      stateReason: i.stateReason,
      architecture: 'x86_64',
      rootDeviceType: 'ebs',
      rootDeviceName: '/dev/xvda',
      iamInstanceProfile: i.iamInstanceProfile ? { arn: i.iamInstanceProfile.startsWith('arn:') ? i.iamInstanceProfile : `arn:aws:iam::${OWNER_ID}:instance-profile/${i.iamInstanceProfile}`, id: 'AIPA0000000000000001' } : undefined,
      instanceLifecycle: i.spot ? 'spot' : undefined,
      tagSet: i.tags.size ? [...i.tags].map(([key, value]) => ({ key, value })) : undefined,
    };
  }

  private ids(p: QueryParams): Instance[] {
    return p.list('InstanceId').map((id) => this.store.get(id));
  }

  private filtered(list: Instance[], filters: { name: string; values: string[] }[]): Instance[] {
    const field = (i: Instance, name: string): string[] | undefined => {
      if (name.startsWith('tag:')) return i.tags.has(name.slice(4)) ? [i.tags.get(name.slice(4))!] : [];
      switch (name) {
        case 'instance-state-name':
          return [i.state];
        case 'instance-state-code':
          return [String(STATE_CODES[i.state])];
        case 'instance-id':
          return [i.id];
        case 'instance-type':
          return [i.instanceType];
        case 'subnet-id':
          return [i.subnetId];
        case 'image-id':
          return [i.imageId];
        case 'client-token':
          return [i.clientToken];
        case 'availability-zone':
          return [i.availabilityZone];
        case 'instance-lifecycle':
          return i.spot ? ['spot'] : [];
        case 'tag-key':
          return [...i.tags.keys()];
        case 'reservation-id':
          return [i.reservationId];
        default:
          return undefined;
      }
    };
    for (const f of filters) {
      if (!f.name) throw new Ec2Error('InvalidParameterValue', 'The filter name must not be empty');
      if (field({ tags: new Map() } as Instance, f.name) === undefined && !f.name.startsWith('tag:'))
        throw new Ec2Error('InvalidParameterValue', `The filter '${f.name}' is invalid`);
    }
    return list.filter((i) => filters.every((f) => (field(i, f.name) ?? []).some((v) => f.values.some((pat) => matchesWildcard(pat, v)))));
  }

  private page<T>(p: QueryParams, list: T[], ids: string[]): { items: T[]; nextToken?: string } {
    const maxText = p.get('MaxResults');
    if (maxText === undefined) {
      if (p.get('NextToken')) throw new Ec2Error('InvalidParameterValue', 'NextToken without MaxResults');
      return { items: list };
    }
    if (ids.length) throw new Ec2Error('InvalidParameterCombination', 'The parameter instancesSet cannot be used with the parameter maxResults');
    const max = Number(maxText);
    if (!Number.isInteger(max) || max < 5 || max > 1000) throw new Ec2Error('InvalidParameterValue', `Value ( ${maxText} ) for parameter maxResults is invalid. Expecting a value greater than 5.`);
    let offset = 0;
    const token = p.get('NextToken');
    if (token) {
      const m = /^fake1:(\d+)$/.exec(Buffer.from(token, 'base64').toString('utf8'));
      if (!m) throw new Ec2Error('InvalidParameterValue', `Invalid value '${token}' for nextToken`);
      offset = Number(m[1]);
    }
    const items = list.slice(offset, offset + max);
    return { items, nextToken: offset + max < list.length ? Buffer.from(`fake1:${offset + max}`).toString('base64') : undefined };
  }

  private describeInstances(p: QueryParams): Record<string, XmlValue> {
    const ids = p.list('InstanceId');
    const base = ids.length ? this.ids(p) : [...this.store.all.values()];
    const { items, nextToken } = this.page(p, this.filtered(base, p.filters()), ids);
    const byReservation = new Map<string, Instance[]>();
    for (const i of items) byReservation.set(i.reservationId, [...(byReservation.get(i.reservationId) ?? []), i]);
    return {
      reservationSet: [...byReservation].map(([rid, list]) => this.reservationXml(rid, list) as XmlValue),
      nextToken,
    };
  }

  private changeStates(p: QueryParams, change: (i: Instance) => StateName): Record<string, XmlValue> {
    const list = this.ids(p);
    if (list.length === 0) throw new Ec2Error('MissingParameter', 'The request must contain the parameter InstanceId');
    // EC2 checks every instance before changing any
    const out = list.map((i) => {
      const previous = i.state;
      change(i);
      return { instanceId: i.id, currentState: { code: STATE_CODES[i.state], name: i.state }, previousState: { code: STATE_CODES[previous], name: previous } };
    });
    return { instancesSet: out };
  }

  private tags(p: QueryParams, create: boolean): Record<string, XmlValue> {
    const ids = p.list('ResourceId');
    if (ids.length === 0) throw new Ec2Error('MissingParameter', 'The request must contain the parameter resourceIdSet');
    const list = ids.map((id) => this.store.get(id));
    const tags = p.tags();
    for (const t of tags) if (!t.key || t.key.startsWith('aws:')) throw new Ec2Error('InvalidParameterValue', `Tag key '${t.key}' is not allowed`);
    for (const i of list)
      for (const t of tags) {
        if (create) i.tags.set(t.key, t.value);
        else if (p.raw.has(`Tag.${tags.indexOf(t) + 1}.Value`) ? i.tags.get(t.key) === t.value : true) i.tags.delete(t.key);
      }
    return { return: true };
  }

  private describeStatus(p: QueryParams): Record<string, XmlValue> {
    const ids = p.list('InstanceId');
    const all = p.get('IncludeAllInstances') === 'true';
    const base = (ids.length ? this.ids(p) : [...this.store.all.values()]).filter((i) => all || i.state === 'running');
    const { items, nextToken } = this.page(p, base, ids);
    const check = (i: Instance) => (i.state !== 'running' ? { status: 'not-applicable' } : { status: i.impaired ? 'impaired' : 'ok', details: [{ name: 'reachability', status: i.impaired ? 'failed' : 'passed' }] });
    return {
      instanceStatusSet: items.map((i) => ({
        instanceId: i.id,
        availabilityZone: i.availabilityZone,
        instanceState: { code: STATE_CODES[i.state], name: i.state },
        systemStatus: check(i),
        instanceStatus: check(i),
      })),
      nextToken,
    };
  }

  private modifyAttribute(p: QueryParams): Record<string, XmlValue> {
    const i = this.store.get(p.get('InstanceId') ?? '');
    const blob = p.get('UserData.Value');
    const plain = p.get('Attribute') === 'userData' ? p.get('Value') : undefined;
    if (blob === undefined && plain === undefined) throw new Ec2Error('InvalidParameterCombination', 'No attributes specified.');
    // `UserData.Value` is a blob, base64 on the wire, and EC2 wants what is inside to be base64 as
    // well (the user data itself): a tool that sends the script unencoded gets
    // InvalidUserData.Malformed. `Attribute=userData&Value=…` (a string) carries that base64 as is.
    const inner = blob !== undefined ? Buffer.from(blob, 'base64').toString('utf8') : plain!;
    if (!isBase64(inner)) throw new Ec2Error('InvalidUserData.Malformed', 'Invalid BASE64 encoding of user data.');
    if (i.state !== 'stopped') throw new Ec2Error('IncorrectInstanceState', `The instance '${i.id}' is not in the 'stopped' state.`);
    i.userData = Buffer.from(inner, 'base64').toString('utf8');
    return { return: true };
  }

  private describeAttribute(p: QueryParams): Record<string, XmlValue> {
    const i = this.store.get(p.get('InstanceId') ?? '');
    if (p.get('Attribute') !== 'userData') throw new Ec2Error('InvalidParameterValue', `Value (${p.get('Attribute')}) for parameter attribute is invalid. Only userData is served by this fake.`);
    return { instanceId: i.id, userData: i.userData ? { value: Buffer.from(i.userData).toString('base64') } : {} };
  }
}
