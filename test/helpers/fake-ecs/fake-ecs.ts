/*
 * A fake Amazon ECS endpoint on loopback for the ecs provider's tests: the real wire protocol
 * (JSON 1.1, `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>`, SigV4 checked against
 * the test key, errors as `{__type, message}`), the operations runyard uses, and tasks that really
 * run: each one a podman container of its task definition's image with the overrides' env.
 *
 * Task lifecycle, with timings from the options:
 *
 *   RunTask ─► PROVISIONING ─(provisionMs)─► PENDING ─(image found, container started)─► RUNNING
 *                  │                            │ no image / injected failure                 │
 *                  │                            ▼                                              ▼
 *                  └──── StopTask ────►  STOPPED (TaskFailedToStart)    container ends / StopTask / spot
 *                                                                          ─► STOPPING ─► DEPROVISIONING ─► STOPPED
 *
 * Failures are injected with inject(): an API error for the next N calls of an operation
 * (ThrottlingException…), RunTask `failures[]` (RESOURCE:CPU, capacity…), or a task that fails to
 * start; interrupt() stops a task as a Fargate Spot reclaim does. The same call sequences run
 * against moto in the differential tests, which keep the response shapes honest.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { verifySigV4 } from '../aws/sigv4.js';
import { EcsError, client, invalid } from './errors.js';
import { TaskContainers } from './task-containers.js';

const TARGET_PREFIX = 'AmazonEC2ContainerServiceV20141113.';
const ACCOUNT = '123456789012';

type Tag = { key: string; value: string };
type Json = Record<string, any>;

export type Injection =
  | { op: string; error: { type: string; message: string; status?: number }; times?: number }
  | { op: 'RunTask'; failure: { reason: string; detail?: string }; times?: number }
  | { op: 'StartTask'; stop: { stopCode: string; stoppedReason: string }; times?: number };

export interface FakeEcsOptions {
  /** podman's API socket: tasks run there */
  socketPath: string;
  clusters?: string[];
  provisionMs?: number;
  deprovisionMs?: number;
  /** `none`: tasks reach RUNNING without a container (benchmarks of the launch path alone) */
  compute?: 'podman' | 'none';
}

interface TaskDef {
  arn: string;
  family: string;
  revision: number;
  input: Json;
  tags: Tag[];
  registeredAt: number;
  status: 'ACTIVE' | 'INACTIVE';
}

export interface FakeTask {
  id: string;
  arn: string;
  cluster: string;
  def: TaskDef;
  lastStatus: string;
  desiredStatus: 'RUNNING' | 'STOPPED';
  startedBy?: string;
  group: string;
  launchType?: string;
  capacityProviderName?: string;
  overrides: Json;
  tags: Tag[];
  subnet?: string;
  createdAt: number;
  startedAt?: number;
  stoppingAt?: number;
  stoppedAt?: number;
  stopCode?: string;
  stoppedReason?: string;
  exitCode?: number;
  containerId?: string;
  service?: string;
  /** when the fake's RunTask (or service scheduler) created it, and when its container ran (ms) */
  timing: { requested: number; running?: number };
}

interface Service {
  arn: string;
  name: string;
  cluster: string;
  def: TaskDef;
  desiredCount: number;
  status: 'ACTIVE' | 'DRAINING' | 'INACTIVE';
  input: Json;
  tags: Tag[];
  createdAt: number;
  propagateTags?: string;
}

export class FakeEcs {
  url = '';
  readonly calls: { op: string; at: number; input: Json }[] = [];
  readonly tasks = new Map<string, FakeTask>();
  readonly containers: TaskContainers;
  private server: Server;
  private defs = new Map<string, TaskDef[]>();
  private services = new Map<string, Service>();
  private clusters = new Set<string>();
  private tokens = new Map<string, { at: number; response: Json }>();
  private injections: (Injection & { left: number })[] = [];
  private region = 'us-east-1';
  private serviceTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private opts: FakeEcsOptions) {
    for (const c of opts.clusters ?? ['default']) this.clusters.add(c);
    this.containers = new TaskContainers(opts.socketPath, randomBytes(6).toString('hex'));
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  static async start(opts: FakeEcsOptions): Promise<FakeEcs> {
    const f = new FakeEcs(opts);
    await new Promise<void>((ok) => f.server.listen(0, '127.0.0.1', ok));
    f.url = `http://127.0.0.1:${(f.server.address() as { port: number }).port}`;
    return f;
  }

  inject(rule: Injection): void {
    this.injections.push({ ...rule, left: rule.times ?? 1 });
  }

  private take<K extends 'error' | 'failure' | 'stop'>(op: string, key: K): (Injection & { left: number }) | undefined {
    const i = this.injections.findIndex((r) => r.op === op && key in r && r.left > 0);
    if (i < 0) return undefined;
    const r = this.injections[i]!;
    if (--r.left === 0) this.injections.splice(i, 1);
    return r;
  }

  count(op: string): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  /** Stops a task the way a Fargate Spot reclaim does. */
  async interrupt(arn: string): Promise<void> {
    const t = this.tasks.get(arn);
    if (t) await this.stopTask(t, 'SpotInterruption', 'Your Spot Task was interrupted.');
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    // The task metadata endpoint (v4) the agent reads from inside its task: no signature, like ECS's.
    const meta = /^\/v4\/([0-9a-f]{32})\/(task|taskWithTags)$/.exec(req.url ?? '');
    if (req.method === 'GET' && meta) return this.metadata(res, meta[1]!, meta[2] === 'taskWithTags');
    const send = (status: number, payload: Json) => {
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() });
      res.end(JSON.stringify(payload));
    };
    const target = String(req.headers['x-amz-target'] ?? '');
    try {
      const sig = verifySigV4({ method: req.method!, url: req.url!, headers: req.headers, body }, undefined, { mismatchCode: 'InvalidSignatureException' });
      if (!sig.ok) throw new EcsError(sig.code, sig.message, sig.code === 'MissingAuthenticationToken' ? 403 : 400);
      this.region = sig.region;
      if (!target.startsWith(TARGET_PREFIX)) throw new EcsError('UnknownOperationException', `unknown target ${target}`);
      const op = target.slice(TARGET_PREFIX.length);
      let input: Json;
      try {
        input = body.length ? JSON.parse(body.toString('utf8')) : {};
      } catch {
        throw new EcsError('SerializationException', 'request body is not JSON');
      }
      this.calls.push({ op, at: performance.now(), input });
      const injected = this.take(op, 'error');
      if (injected && 'error' in injected) throw new EcsError(injected.error.type, injected.error.message, injected.error.status ?? 400);
      const fn = (this as any)[`op${op}`] as ((i: Json) => Promise<Json> | Json) | undefined;
      if (!fn) throw new EcsError('UnknownOperationException', `operation ${op} is not supported by this fake`);
      send(200, await fn.call(this, input));
    } catch (err) {
      if (err instanceof EcsError) send(err.status, { __type: err.type, message: err.message });
      else send(500, { __type: 'ServerException', message: (err as Error).message });
    }
  }

  private metadata(res: ServerResponse, id: string, withTags: boolean) {
    const t = [...this.tasks.values()].find((x) => x.id === id);
    if (!t) {
      res.writeHead(404).end();
      return;
    }
    const out: Json = { Cluster: this.clusterArn(t.cluster), TaskARN: t.arn, Family: t.def.family, Revision: String(t.def.revision), DesiredStatus: t.desiredStatus, KnownStatus: t.lastStatus, LaunchType: t.launchType ?? 'FARGATE' };
    if (withTags) out.TaskTags = Object.fromEntries(t.tags.map((x) => [x.key, x.value]));
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out));
  }

  // ---- names -------------------------------------------------------------------------------

  private clusterArn(name: string) {
    return `arn:aws:ecs:${this.region}:${ACCOUNT}:cluster/${name}`;
  }

  private cluster(input: Json): string {
    const c = String(input.cluster ?? 'default').replace(/^arn:aws:ecs:[^:]+:\d+:cluster\//, '');
    if (!this.clusters.has(c)) throw new EcsError('ClusterNotFoundException', 'Cluster not found.');
    return c;
  }

  private resolveDef(ref: unknown): TaskDef {
    if (typeof ref !== 'string' || !ref) throw invalid('taskDefinition can not be blank.');
    const m = /^(?:arn:aws:ecs:[^:]+:\d+:task-definition\/)?([A-Za-z0-9_-]+)(?::(\d+))?$/.exec(ref);
    const revs = m ? this.defs.get(m[1]!) : undefined;
    const def = revs && (m![2] ? revs.find((d) => d.revision === Number(m![2])) : revs.filter((d) => d.status === 'ACTIVE').at(-1));
    if (!def) throw client('Unable to describe task definition.');
    return def;
  }

  private tags(input: unknown): Tag[] {
    if (input === undefined) return [];
    if (!Array.isArray(input) || input.length > 50) throw invalid('Tags must be a list of at most 50 key/value pairs.');
    for (const t of input) if (typeof t?.key !== 'string' || !t.key || typeof t.value !== 'string' || t.key.length > 128 || t.value.length > 256) throw invalid('Tag keys are 1-128 and values 0-256 characters.');
    return input.map((t) => ({ key: t.key, value: t.value }));
  }

  // ---- task definitions --------------------------------------------------------------------

  opCreateCluster(input: Json) {
    const name = String(input.clusterName ?? 'default');
    this.clusters.add(name);
    return { cluster: { clusterArn: this.clusterArn(name), clusterName: name, status: 'ACTIVE', registeredContainerInstancesCount: 0, runningTasksCount: 0, pendingTasksCount: 0, activeServicesCount: 0 } };
  }

  opRegisterTaskDefinition(input: Json) {
    const family = input.family;
    if (typeof family !== 'string' || !/^[A-Za-z0-9_-]{1,255}$/.test(family)) throw client('Family contains invalid characters.');
    const containers = input.containerDefinitions;
    if (!Array.isArray(containers) || containers.length === 0) throw client('Container list cannot be empty.');
    for (const c of containers) if (!c?.name || !c?.image) throw client('Container.name and Container.image should not be null or empty.');
    if ((input.requiresCompatibilities ?? []).includes('FARGATE')) {
      if (input.networkMode !== 'awsvpc') throw client('Fargate only supports network mode ‘awsvpc’.');
      if (!input.cpu || !input.memory) throw client('Fargate requires that cpu and memory be defined at the task level.');
      if (!fargateOk(Number(input.cpu), Number(input.memory))) throw client(`No Fargate configuration exists for given values: ${input.cpu} CPU, ${input.memory} memory. See the Amazon ECS documentation for the valid combinations.`);
    }
    const revs = this.defs.get(family) ?? [];
    const revision = (revs.at(-1)?.revision ?? 0) + 1;
    const def: TaskDef = { arn: `arn:aws:ecs:${this.region}:${ACCOUNT}:task-definition/${family}:${revision}`, family, revision, input, tags: this.tags(input.tags), registeredAt: Date.now(), status: 'ACTIVE' };
    revs.push(def);
    this.defs.set(family, revs);
    return { taskDefinition: this.defView(def), tags: def.tags };
  }

  private defView(d: TaskDef): Json {
    const { tags: _t, ...rest } = d.input;
    return {
      ...rest,
      taskDefinitionArn: d.arn,
      family: d.family,
      revision: d.revision,
      status: d.status,
      containerDefinitions: (d.input.containerDefinitions as Json[]).map((c) => ({ environment: [], mountPoints: [], volumesFrom: [], portMappings: [], essential: true, ...c })),
      volumes: d.input.volumes ?? [],
      compatibilities: ['EC2', ...((d.input.requiresCompatibilities ?? []).includes('FARGATE') ? ['FARGATE'] : [])],
      requiresCompatibilities: d.input.requiresCompatibilities ?? [],
      registeredAt: d.registeredAt / 1000,
      registeredBy: `arn:aws:iam::${ACCOUNT}:user/runyard-test`,
    };
  }

  opDescribeTaskDefinition(input: Json) {
    const d = this.resolveDef(input.taskDefinition);
    return { taskDefinition: this.defView(d), ...((input.include ?? []).includes('TAGS') ? { tags: d.tags } : {}) };
  }

  opDeregisterTaskDefinition(input: Json) {
    const d = this.resolveDef(input.taskDefinition);
    d.status = 'INACTIVE';
    return { taskDefinition: this.defView(d) };
  }

  // ---- tasks -------------------------------------------------------------------------------

  async opRunTask(input: Json) {
    const cluster = this.cluster(input);
    const def = this.resolveDef(input.taskDefinition);
    const count = input.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > 10) throw invalid('count must be between 1 and 10.');
    if (input.launchType && input.capacityProviderStrategy) throw invalid('Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.');
    if (input.startedBy !== undefined && (typeof input.startedBy !== 'string' || input.startedBy.length > 128)) throw invalid('startedBy must be at most 128 characters.');
    if (JSON.stringify(input.overrides ?? {}).length > 8192) throw invalid('Container Overrides length must be at most 8192');
    const fargate = input.launchType === 'FARGATE' || (input.capacityProviderStrategy ?? []).some((s: Json) => String(s.capacityProvider).startsWith('FARGATE'));
    const subnets: string[] = input.networkConfiguration?.awsvpcConfiguration?.subnets ?? [];
    if (def.input.networkMode === 'awsvpc' && subnets.length === 0) throw invalid("Network Configuration must be provided when networkMode 'awsvpc' is specified.");
    if (fargate && !(def.input.requiresCompatibilities ?? []).includes('FARGATE')) throw invalid('Task definition does not support launch_type FARGATE.');
    const tags = this.tags(input.tags);
    if (input.clientToken !== undefined) {
      const seen = this.tokens.get(input.clientToken);
      if (seen) return seen.response;
    }
    const injected = this.take('RunTask', 'failure');
    const response: Json = { tasks: [], failures: [] };
    for (let i = 0; i < count; i++) {
      if (injected && 'failure' in injected) {
        response.failures.push({ reason: injected.failure.reason, ...(injected.failure.detail ? { detail: injected.failure.detail } : {}) });
        continue;
      }
      const t = this.createTask({ cluster, def, startedBy: input.startedBy, group: input.group ?? `family:${def.family}`, launchType: input.launchType, capacity: input.capacityProviderStrategy?.[0]?.capacityProvider, overrides: input.overrides ?? {}, tags, subnet: subnets[i % Math.max(1, subnets.length)] });
      response.tasks.push(this.taskView(t, false));
    }
    if (input.clientToken !== undefined) this.tokens.set(input.clientToken, { at: Date.now(), response });
    return response;
  }

  private createTask(o: { cluster: string; def: TaskDef; startedBy?: string; group: string; launchType?: string; capacity?: string; overrides: Json; tags: Tag[]; subnet?: string; service?: string }): FakeTask {
    const id = randomBytes(16).toString('hex');
    const t: FakeTask = {
      id,
      arn: `arn:aws:ecs:${this.region}:${ACCOUNT}:task/${o.cluster}/${id}`,
      cluster: o.cluster,
      def: o.def,
      lastStatus: 'PROVISIONING',
      desiredStatus: 'RUNNING',
      startedBy: o.startedBy,
      group: o.group,
      launchType: o.capacity ? undefined : (o.launchType ?? 'EC2'),
      capacityProviderName: o.capacity,
      overrides: o.overrides,
      tags: [...o.tags],
      subnet: o.subnet,
      createdAt: Date.now(),
      service: o.service,
      timing: { requested: performance.now() },
    };
    this.tasks.set(t.arn, t);
    setTimeout(() => void this.provision(t), this.opts.provisionMs ?? 100).unref();
    return t;
  }

  /** PROVISIONING → PENDING → RUNNING: the image must be there (nothing can be pulled here). */
  private async provision(t: FakeTask) {
    if (t.desiredStatus === 'STOPPED' || this.closed) return;
    t.lastStatus = 'PENDING';
    const failed = this.take('StartTask', 'stop');
    if (failed && 'stop' in failed) return this.stopped(t, failed.stop.stopCode, failed.stop.stoppedReason);
    if (this.opts.compute === 'none') {
      t.lastStatus = 'RUNNING';
      t.startedAt = Date.now();
      t.timing.running = performance.now();
      return;
    }
    const container = (t.def.input.containerDefinitions as Json[])[0]!;
    const image = String(container.image);
    if (!(await this.containers.hasImage(image)))
      return this.stopped(t, 'TaskFailedToStart', `CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref ${image}: not found`);
    const override = ((t.overrides.containerOverrides ?? []) as Json[]).find((c) => c.name === container.name) ?? {};
    const env: Record<string, string> = {};
    for (const e of [...(container.environment ?? []), ...(override.environment ?? [])] as Json[]) env[e.name] = e.value;
    env.ECS_CONTAINER_METADATA_URI_V4 = `${this.url}/v4/${t.id}`;
    try {
      const c = await this.containers.start(t.id, t.arn, image, env, (code) => void this.containerEnded(t, code));
      t.containerId = c.id;
    } catch (err) {
      return this.stopped(t, 'TaskFailedToStart', `CannotStartContainerError: ${(err as Error).message}`);
    }
    // a StopTask may have come while the container was being created
    if ((t.desiredStatus as string) === 'STOPPED') return this.containers.stop(t.containerId!, 0);
    t.lastStatus = 'RUNNING';
    t.startedAt = Date.now();
    t.timing.running = performance.now();
  }

  private containerEnded(t: FakeTask, code: number) {
    t.exitCode = code;
    if (!t.stopCode) {
      t.stopCode = 'EssentialContainerExited';
      t.stoppedReason = 'Essential container in task exited';
    }
    t.desiredStatus = 'STOPPED';
    t.lastStatus = 'DEPROVISIONING';
    t.stoppingAt ??= Date.now();
    setTimeout(() => this.stopped(t, t.stopCode!, t.stoppedReason!), this.opts.deprovisionMs ?? 50).unref();
  }

  private stopped(t: FakeTask, stopCode: string, reason: string) {
    t.stopCode ??= stopCode;
    t.stoppedReason ??= reason;
    t.desiredStatus = 'STOPPED';
    t.lastStatus = 'STOPPED';
    t.stoppingAt ??= Date.now();
    t.stoppedAt = Date.now();
  }

  private async stopTask(t: FakeTask, stopCode: string, reason: string) {
    if (t.lastStatus === 'STOPPED' || t.desiredStatus === 'STOPPED') return;
    t.desiredStatus = 'STOPPED';
    t.stopCode = stopCode;
    t.stoppedReason = reason;
    t.stoppingAt = Date.now();
    if (!t.containerId) return this.stopped(t, stopCode, reason);
    t.lastStatus = 'STOPPING';
    const container = (t.def.input.containerDefinitions as Json[])[0]!;
    // ECS sends SIGTERM, then SIGKILL after the container's stopTimeout (default 30 s).
    void this.containers.stop(t.containerId, container.stopTimeout ?? 30);
  }

  taskView(t: FakeTask, withTags: boolean): Json {
    const container = (t.def.input.containerDefinitions as Json[])[0]!;
    const s = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
    const view: Json = {
      taskArn: t.arn,
      clusterArn: this.clusterArn(t.cluster),
      taskDefinitionArn: t.def.arn,
      lastStatus: t.lastStatus,
      desiredStatus: t.desiredStatus,
      group: t.group,
      overrides: { containerOverrides: [], inferenceAcceleratorOverrides: [], ...t.overrides },
      cpu: String(t.def.input.cpu ?? container.cpu ?? 0),
      memory: String(t.def.input.memory ?? container.memory ?? 0),
      version: 1,
      createdAt: s(t.createdAt),
      availabilityZone: `${this.region}a`,
      attachments: t.subnet
        ? [{ id: randomUUID(), type: 'ElasticNetworkInterface', status: t.lastStatus === 'STOPPED' ? 'DELETED' : 'ATTACHED', details: [{ name: 'subnetId', value: t.subnet }, { name: 'privateIPv4Address', value: '10.0.0.10' }] }]
        : [],
      containers: [{ containerArn: `arn:aws:ecs:${this.region}:${ACCOUNT}:container/${t.cluster}/${t.id}/${container.name}`, taskArn: t.arn, name: container.name, image: container.image, lastStatus: t.lastStatus === 'STOPPING' || t.lastStatus === 'DEPROVISIONING' ? 'RUNNING' : t.lastStatus, ...(t.exitCode !== undefined ? { exitCode: t.exitCode } : {}), ...(t.containerId ? { runtimeId: t.containerId } : {}), networkInterfaces: [] }],
      tags: withTags ? t.tags : [],
    };
    if (t.startedBy) view.startedBy = t.startedBy;
    if (t.launchType) view.launchType = t.launchType;
    if (t.capacityProviderName) view.capacityProviderName = t.capacityProviderName;
    if (t.startedAt) view.startedAt = s(t.startedAt);
    if (t.stoppingAt) view.stoppingAt = s(t.stoppingAt);
    if (t.stoppedAt) view.stoppedAt = s(t.stoppedAt);
    if (t.stopCode) view.stopCode = t.stopCode;
    if (t.stoppedReason) view.stoppedReason = t.stoppedReason;
    return view;
  }

  opDescribeTasks(input: Json) {
    const cluster = this.cluster(input);
    const ids: unknown = input.tasks;
    if (!Array.isArray(ids) || ids.length === 0) throw invalid('Tasks cannot be empty.');
    if (ids.length > 100) throw invalid('Tasks cannot have more than 100 elements');
    const withTags = (input.include ?? []).includes('TAGS');
    const tasks: Json[] = [];
    const failures: Json[] = [];
    for (const ref of ids as string[]) {
      const t = this.tasks.get(ref) ?? [...this.tasks.values()].find((x) => x.id === ref);
      if (t && t.cluster === cluster) tasks.push(this.taskView(t, withTags));
      else failures.push({ arn: ref, reason: 'MISSING' });
    }
    return { tasks, failures };
  }

  opListTasks(input: Json) {
    const cluster = this.cluster(input);
    const max = input.maxResults ?? 100;
    if (!Number.isInteger(max) || max < 1 || max > 100) throw invalid('maxResults must be between 1 and 100.');
    const desired = input.desiredStatus ?? 'RUNNING';
    const all = [...this.tasks.values()].filter(
      (t) => t.cluster === cluster && t.desiredStatus === desired && (input.startedBy === undefined || t.startedBy === input.startedBy) && (input.family === undefined || t.def.family === input.family) && (input.serviceName === undefined || t.service === input.serviceName),
    );
    const start = input.nextToken ? Number(Buffer.from(String(input.nextToken), 'base64').toString()) : 0;
    const page = all.slice(start, start + max);
    return { taskArns: page.map((t) => t.arn), ...(start + max < all.length ? { nextToken: Buffer.from(String(start + max)).toString('base64') } : {}) };
  }

  async opStopTask(input: Json) {
    const cluster = this.cluster(input);
    const t = this.tasks.get(input.task) ?? [...this.tasks.values()].find((x) => x.id === input.task);
    if (!t || t.cluster !== cluster) throw invalid('The referenced task was not found.');
    if (typeof input.reason === 'string' && input.reason.length > 255) throw invalid('reason must be at most 255 characters.');
    await this.stopTask(t, t.service ? 'ServiceSchedulerInitiated' : 'UserInitiated', input.reason ?? 'Task stopped by user');
    return { task: this.taskView(t, false) };
  }

  opTagResource(input: Json) {
    const tags = this.tags(input.tags);
    const t = this.tasks.get(input.resourceArn);
    const target = t?.tags ?? [...this.defs.values()].flat().find((d) => d.arn === input.resourceArn)?.tags ?? [...this.services.values()].find((s) => s.arn === input.resourceArn)?.tags;
    if (!target) throw invalid('The specified resource is not found.');
    for (const tag of tags) {
      const i = target.findIndex((x) => x.key === tag.key);
      if (i >= 0) target[i] = tag;
      else target.push(tag);
    }
    return {};
  }

  opListTagsForResource(input: Json) {
    const t = this.tasks.get(input.resourceArn);
    const tags = t?.tags ?? [...this.services.values()].find((s) => s.arn === input.resourceArn)?.tags ?? [...this.defs.values()].flat().find((d) => d.arn === input.resourceArn)?.tags;
    if (!tags) throw invalid('The specified resource is not found.');
    return { tags };
  }

  // ---- services: a scheduler keeps the running count at desiredCount ------------------------

  opCreateService(input: Json) {
    const cluster = this.cluster(input);
    const name = input.serviceName;
    if (typeof name !== 'string' || !/^[A-Za-z0-9_-]{1,255}$/.test(name)) throw invalid('serviceName is invalid.');
    const existing = this.services.get(`${cluster}/${name}`);
    if (existing && existing.status === 'ACTIVE') throw invalid('Creation of service was not idempotent.');
    const def = this.resolveDef(input.taskDefinition);
    const desired = input.desiredCount ?? 0;
    if (!Number.isInteger(desired) || desired < 0) throw invalid('desiredCount must be a non-negative integer.');
    if (def.input.networkMode === 'awsvpc' && !(input.networkConfiguration?.awsvpcConfiguration?.subnets ?? []).length) throw invalid("Network Configuration must be provided when networkMode 'awsvpc' is specified.");
    const svc: Service = { arn: `arn:aws:ecs:${this.region}:${ACCOUNT}:service/${cluster}/${name}`, name, cluster, def, desiredCount: desired, status: 'ACTIVE', input, tags: this.tags(input.tags), createdAt: Date.now(), propagateTags: input.propagateTags };
    this.services.set(`${cluster}/${name}`, svc);
    this.scheduleServices();
    return { service: this.serviceView(svc) };
  }

  private service(input: Json, key = 'service'): Service {
    const cluster = this.cluster(input);
    const name = String(input[key] ?? '').replace(/^arn:aws:ecs:[^:]+:\d+:service\/([^/]+\/)?/, '');
    const svc = this.services.get(`${cluster}/${name}`);
    if (!svc || svc.status === 'INACTIVE') throw new EcsError('ServiceNotFoundException', 'Service not found.');
    return svc;
  }

  opUpdateService(input: Json) {
    const svc = this.service(input);
    if (svc.status !== 'ACTIVE') throw new EcsError('ServiceNotActiveException', 'Service was not ACTIVE.');
    if (input.desiredCount !== undefined) {
      if (!Number.isInteger(input.desiredCount) || input.desiredCount < 0) throw invalid('desiredCount must be a non-negative integer.');
      svc.desiredCount = input.desiredCount;
    }
    if (input.taskDefinition) svc.def = this.resolveDef(input.taskDefinition);
    this.scheduleServices();
    return { service: this.serviceView(svc) };
  }

  opDescribeServices(input: Json) {
    const cluster = this.cluster(input);
    const names: unknown = input.services;
    if (!Array.isArray(names) || names.length === 0 || names.length > 10) throw invalid('services must list 1-10 services.');
    const services: Json[] = [];
    const failures: Json[] = [];
    for (const n of names as string[]) {
      const key = `${cluster}/${n.replace(/^arn:aws:ecs:[^:]+:\d+:service\/([^/]+\/)?/, '')}`;
      const svc = this.services.get(key);
      if (svc) services.push(this.serviceView(svc, (input.include ?? []).includes('TAGS')));
      else failures.push({ arn: `arn:aws:ecs:${this.region}:${ACCOUNT}:service/${key}`, reason: 'MISSING' });
    }
    return { services, failures };
  }

  async opDeleteService(input: Json) {
    const svc = this.service(input);
    if (svc.desiredCount > 0 && !input.force) throw invalid('The service cannot be stopped while it is scaled above 0.');
    svc.desiredCount = 0;
    svc.status = 'DRAINING';
    for (const t of this.serviceTasks(svc)) await this.stopTask(t, 'ServiceSchedulerInitiated', 'Service deleted');
    this.scheduleServices();
    return { service: this.serviceView(svc) };
  }

  private serviceTasks(svc: Service) {
    return [...this.tasks.values()].filter((t) => t.service === svc.name && t.cluster === svc.cluster && t.desiredStatus === 'RUNNING');
  }

  private serviceView(svc: Service, withTags = false): Json {
    const live = [...this.tasks.values()].filter((t) => t.service === svc.name && t.cluster === svc.cluster && t.desiredStatus === 'RUNNING');
    return {
      serviceArn: svc.arn,
      serviceName: svc.name,
      clusterArn: this.clusterArn(svc.cluster),
      status: svc.status,
      desiredCount: svc.desiredCount,
      runningCount: live.filter((t) => t.lastStatus === 'RUNNING').length,
      pendingCount: live.filter((t) => t.lastStatus !== 'RUNNING').length,
      taskDefinition: svc.def.arn,
      launchType: svc.input.launchType,
      ...(svc.input.capacityProviderStrategy ? { capacityProviderStrategy: svc.input.capacityProviderStrategy } : {}),
      deployments: [{ id: `ecs-svc/${svc.name}`, status: 'PRIMARY', taskDefinition: svc.def.arn, desiredCount: svc.desiredCount, runningCount: live.length, pendingCount: 0, createdAt: svc.createdAt / 1000, updatedAt: Date.now() / 1000 }],
      events: [],
      createdAt: svc.createdAt / 1000,
      schedulingStrategy: 'REPLICA',
      ...(svc.input.networkConfiguration ? { networkConfiguration: svc.input.networkConfiguration } : {}),
      ...(withTags ? { tags: svc.tags } : {}),
    };
  }

  private scheduleServices() {
    if (this.serviceTimer || this.closed) return;
    this.serviceTimer = setInterval(() => void this.reconcileServices(), 100);
    this.serviceTimer.unref();
  }

  /** What ECS's service scheduler does: start tasks up to the desired count, stop the excess. */
  private async reconcileServices() {
    for (const svc of this.services.values()) {
      const live = this.serviceTasks(svc);
      if (svc.status === 'DRAINING' && live.length === 0) svc.status = 'INACTIVE';
      for (let i = live.length; i < svc.desiredCount; i++) {
        const subnets: string[] = svc.input.networkConfiguration?.awsvpcConfiguration?.subnets ?? [];
        this.createTask({ cluster: svc.cluster, def: svc.def, startedBy: `ecs-svc/${svc.name}`, group: `service:${svc.name}`, launchType: svc.input.launchType, capacity: svc.input.capacityProviderStrategy?.[0]?.capacityProvider, overrides: {}, tags: svc.propagateTags === 'SERVICE' ? svc.tags : [], subnet: subnets[i % Math.max(1, subnets.length)], service: svc.name });
      }
      // the newest go first, as ECS prefers to stop tasks that are not yet running
      for (const t of live.slice(svc.desiredCount).reverse()) await this.stopTask(t, 'ServiceSchedulerInitiated', 'Scaling activity initiated by (deployment ecs-svc)');
    }
  }

  /** Task containers still on the engine (tests assert none is left). */
  leftovers(): Promise<string[]> {
    return this.containers.leftovers();
  }

  /** Waits until no task is running and no task container is left; fails naming what is (tests' afterEach). */
  async assertNothingLeft(timeoutMs = 60_000): Promise<void> {
    const running = () => [...this.tasks.values()].filter((x) => x.lastStatus !== 'STOPPED').map((x) => `${x.taskArn} ${x.lastStatus}`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = await this.leftovers();
      if (!running().length && !left.length) return;
      if (Date.now() > deadline) throw new Error(`after ${timeoutMs} ms still running: tasks ${running().join(', ') || 'none'}; containers ${left.join(', ') || 'none'}`);
      await new Promise((ok) => setTimeout(ok, 200));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.serviceTimer);
    await this.containers.close();
    this.server.closeAllConnections();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }
}

function fargateOk(cpu: number, memory: number): boolean {
  const table: Record<number, [number, number, number]> = { 256: [512, 2048, 512], 512: [1024, 4096, 1024], 1024: [2048, 8192, 1024], 2048: [4096, 16384, 1024], 4096: [8192, 30720, 1024], 8192: [16384, 61440, 4096], 16384: [32768, 122880, 8192] };
  const row = table[cpu];
  if (!row) return false;
  if (cpu === 256) return [512, 1024, 2048].includes(memory);
  return memory >= row[0] && memory <= row[1] && (memory - row[0]) % row[2] === 0;
}
