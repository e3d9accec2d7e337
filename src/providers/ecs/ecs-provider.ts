import { createHash } from 'node:crypto';
import {
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ListTasksCommand,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
  StopTaskCommand,
  TagResourceCommand,
  type DescribeTaskDefinitionCommandOutput,
  type DescribeTasksCommandOutput,
  type ListTasksCommandOutput,
  type RegisterTaskDefinitionCommandOutput,
  type RunTaskCommandInput,
  type RunTaskCommandOutput,
  type Task,
} from '@aws-sdk/client-ecs';
import type { LaunchSpec, Provider, ProviderRunner } from '../provider.js';
import type { PoolConfig } from '../../config/schema.js';
import type { Logger } from '../../lib/logger.js';
import { sleep as realSleep } from '../../lib/clock.js';
import { EcsApi, EcsApiError } from './ecs-api.js';
import { TokenBucket } from '../../lib/token-bucket.js';
import { ApiCallTally } from '../api-calls.js';
import { ecsFields, taskDefinitionFor, TAG_CONFIG_HASH, TAG_INSTANCE, TAG_POOL, TAG_RUNNER } from './task-definition.js';
import type { EcsPoolFields } from './pool-config.js';
import { EcsService } from './ecs-service.js';

/** RunTask launches at most this many tasks per call (ECS's limit). */
export const RUN_TASK_MAX = 10;
/** DescribeTasks takes at most this many tasks per call (ECS's limit). */
const DESCRIBE_MAX = 100;
/** A task of ours without a runner tag this long after its launch is a leftover of a crashed launch. */
const UNTAGGED_GRACE_MS = 120_000;

export interface EcsProviderOptions {
  instanceId: string;
  log: Logger;
  /** The clusters to list after a restart: those of the configured ecs pools. */
  pools?: { name: string; fields: EcsPoolFields }[];
  /** How often watched tasks are described (default 5 s). */
  pollMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** Static credentials (tests); default: the SDK's default chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** First backoff after a throttled call (default 200 ms). */
  backoffMs?: number;
}

interface Watched {
  runnerId: string;
  arn: string;
  pool: string;
  api: EcsApi;
  cluster: string;
  startedAt: number;
  stopped?: { code: string; reason: string };
  ended: Promise<void>;
  end: () => void;
}

interface Where {
  api: EcsApi;
  cluster: string;
}

/**
 * Runners as ECS tasks (Fargate or EC2 capacity) through the real ECS API. Each pool gets a
 * task definition registered once per config hash (tagged with it); RunTask launches up to 10
 * runners per call, `startedBy` naming this runyard instance, through a client-side launch
 * bucket shaped like Fargate's. A task of a single launch carries its runner id and launch token
 * in the container overrides; in a batch the tokens of the batch ride in the overrides, and each
 * task is tagged with its runner id right after the launch: the agent reads the tag from the task
 * metadata endpoint (see src/agent/ecs-identity.ts). Watched tasks are described in batches of
 * 100; a restarted control plane adopts its tasks with ListTasks by `startedBy`.
 */
export class EcsProvider implements Provider {
  readonly name = 'ecs';
  readonly batchSize = RUN_TASK_MAX;
  readonly owner: string;
  private apis = new Map<string, EcsApi>();
  private buckets = new Map<string, TokenBucket>();
  private definitions = new Map<string, Promise<string>>();
  private watched = new Map<string, Watched>();
  private listeners: ((runnerId: string, detail: string) => void)[] = [];
  private subnetTurn = new Map<string, number>();
  private clusters = new Map<string, Where>();
  /** runners being launched: list() must not call their untagged tasks leftovers */
  private launching = 0;
  private poller: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private closed = false;
  private readonly sleep: (ms: number) => Promise<void>;
  private services = new Map<string, EcsService>();

  constructor(private opts: EcsProviderOptions) {
    this.sleep = opts.sleep ?? realSleep;
    // Every server of one runyard instance sees the same tasks (they are found by startedBy).
    this.owner = createHash('sha256').update(`ecs\n${opts.instanceId}`).digest('hex').slice(0, 12);
    for (const p of opts.pools ?? []) {
      this.where(p.fields);
      if (p.fields.mode === 'service') this.service(p.name, p.fields);
    }
  }

  get startedBy(): string {
    return `runyard-${this.opts.instanceId}`.slice(0, 128);
  }

  private api(fields: EcsPoolFields): EcsApi {
    const key = EcsApi.key(fields);
    let api = this.apis.get(key);
    if (!api) {
      api = new EcsApi(fields, { log: this.opts.log, sleep: this.sleep, backoffMs: this.opts.backoffMs }, this.opts.credentials);
      this.apis.set(key, api);
    }
    return api;
  }

  private where(fields: EcsPoolFields): Where {
    const key = `${EcsApi.key(fields)}|${fields.cluster}`;
    let w = this.clusters.get(key);
    if (!w) {
      w = { api: this.api(fields), cluster: fields.cluster };
      this.clusters.set(key, w);
    }
    return w;
  }

  /** API calls made so far, by operation, over every endpoint (runyard_provider_api_calls_total). */
  apiCalls(): Record<string, number> {
    return ApiCallTally.sum([...this.apis.values()].map((a) => a.tally));
  }

  private bucket(pool: string, fields: EcsPoolFields): TokenBucket {
    // Fargate's bucket is per account and region: pools on one endpoint share theirs.
    const key = `${EcsApi.key(fields)}|${fields.launchBurst}|${fields.launchRate}`;
    let b = this.buckets.get(key);
    if (!b) {
      // shaped like Fargate's launch limit: one token per task, a call's `count` at a time
      b = new TokenBucket(fields.launchRate, fields.launchBurst, { sleep: this.sleep });
      this.buckets.set(key, b);
    }
    void pool;
    return b;
  }

  private ref(t: { cluster: string; arn: string }) {
    return `ecs:${t.cluster}/${t.arn.split('/').pop()}@${this.owner}`;
  }

  onExit(listener: (runnerId: string, detail: string) => void): void {
    this.listeners.push(listener);
  }

  create(spec: LaunchSpec): Promise<{ ref: string }> {
    return this.createMany([spec])[0]!;
  }

  /**
   * Launches runners of one pool: up to 10 per RunTask call, each call waiting for the launch
   * bucket. Every spec gets its own promise: a call's `failures[]` fail only the specs it could
   * not place, with ECS's reason.
   */
  createMany(specs: LaunchSpec[]): Promise<{ ref: string }>[] {
    const out: Promise<{ ref: string }>[] = [];
    for (let i = 0; i < specs.length; i += RUN_TASK_MAX) {
      const chunk = specs.slice(i, i + RUN_TASK_MAX);
      const pool = chunk[0]!.pool;
      const fields = ecsFields(pool);
      if (fields.mode === 'service') {
        for (const s of chunk) out.push(this.service(s.pool.name, fields).create(s).then(({ ref: arn }) => ({ ref: this.ref({ cluster: fields.cluster, arn }) })));
        continue;
      }
      const results = this.launch(chunk, this.bucket(pool.name, fields).take(chunk.length));
      out.push(...results);
    }
    return out;
  }

  private service(pool: string, fields: EcsPoolFields): EcsService {
    let svc = this.services.get(pool);
    if (!svc) {
      const where = this.where(fields);
      svc = new EcsService({
        pool,
        fields,
        api: where.api,
        log: this.opts.log,
        startedBy: this.startedBy,
        sleep: this.sleep,
        pollMs: Math.min(this.opts.pollMs ?? 250, 250),
        // no overrides in a service: the server URL and the identity source live in its task definition
        taskDefinition: (spec) => this.taskDefinition(spec, where.api, { RUNYARD_SERVER: spec.serverUrl, RUNYARD_RUNNER_IDENTITY: 'ecs-task-tags' }),
        watch: (runnerId, arn) => this.watch({ runnerId, arn, pool, api: where.api, cluster: fields.cluster, startedAt: Date.now() }),
      });
      this.services.set(pool, svc);
    }
    return svc;
  }

  private launch(chunk: LaunchSpec[], ready: Promise<void>): Promise<{ ref: string }>[] {
    const spec0 = chunk[0]!;
    const fields = ecsFields(spec0.pool);
    const where = this.where(fields);
    this.launching++;
    const run = (async () => {
      await ready;
      const taskDefinition = await this.taskDefinition(spec0, where.api);
      const input = this.runTaskInput(chunk, fields, taskDefinition);
      const res = await where.api.send<RunTaskCommandOutput>('RunTask', new RunTaskCommand(input));
      const tasks = res.tasks ?? [];
      const failures = res.failures ?? [];
      if (failures.length) {
        // capacity, ENI or resource trouble in this subnet: the next launch is in the next one anyway
        // (subnets go round per call), so the failing one is left behind
        this.opts.log.warn({ pool: spec0.pool.name, failures, subnets: input.networkConfiguration?.awsvpcConfiguration?.subnets }, 'ECS could not place every task');
      }
      // A batch's tasks learn their runner id from this tag (the overrides are the same for all).
      if (chunk.length > 1)
        await Promise.all(
          tasks.map((t, i) => where.api.send('TagResource', new TagResourceCommand({ resourceArn: t.taskArn!, tags: [{ key: TAG_RUNNER, value: chunk[i]!.runnerId }] }))),
        );
      return { tasks, failures };
    })().finally(() => this.launching--);
    return chunk.map(async (spec, i) => {
      const { tasks, failures } = await run;
      const t = tasks[i];
      if (!t?.taskArn) {
        const f = failures[i - tasks.length] ?? failures[0];
        throw new EcsApiError(`ECS could not place the task: ${f?.reason ?? 'no task returned'}${f?.detail ? ` (${f.detail})` : ''}`, f?.reason ?? 'NoTask', false);
      }
      this.watch({ runnerId: spec.runnerId, arn: t.taskArn, pool: spec.pool.name, api: where.api, cluster: fields.cluster, startedAt: t.createdAt?.getTime() ?? Date.now() });
      this.opts.log.info({ runnerId: spec.runnerId, task: t.taskArn, pool: spec.pool.name, batch: chunk.length }, 'runner task launched');
      return { ref: this.ref({ cluster: fields.cluster, arn: t.taskArn }) };
    });
  }

  private runTaskInput(chunk: LaunchSpec[], fields: EcsPoolFields, taskDefinition: string): RunTaskCommandInput {
    const spec0 = chunk[0]!;
    const env: Record<string, string> = { RUNYARD_SERVER: spec0.serverUrl };
    if (chunk.length === 1) {
      Object.assign(env, { RUNYARD_RUNNER_ID: spec0.runnerId, RUNYARD_REGISTRATION_TOKEN: spec0.registrationToken, RUNYARD_RUNNER_NAME: spec0.name });
    } else {
      env.RUNYARD_RUNNER_IDENTITY = 'ecs-task-tags';
      env.RUNYARD_LAUNCH_TOKENS = chunk.map((s) => `${s.runnerId}=${s.registrationToken}`).join(',');
    }
    const subnets = fields.subnets;
    const turn = this.subnetTurn.get(spec0.pool.name) ?? 0;
    // one subnet per call, in turn: calls spread over the zones, and a failing one is left behind
    const subnet = subnets.length ? [subnets[turn % subnets.length]!] : [];
    this.subnetTurn.set(spec0.pool.name, turn + 1);
    const tags = [
      { key: TAG_INSTANCE, value: spec0.instanceId },
      { key: TAG_POOL, value: spec0.pool.name },
      ...(chunk.length === 1 ? [{ key: TAG_RUNNER, value: spec0.runnerId }] : []),
    ];
    return {
      cluster: fields.cluster,
      taskDefinition,
      count: chunk.length,
      startedBy: this.startedBy,
      // the same runners always give the same token: a retried call starts nothing twice
      clientToken: createHash('sha256').update(chunk.map((s) => s.runnerId).join(',')).digest('hex').slice(0, 64),
      tags,
      enableECSManagedTags: true,
      ...(fields.capacityProviderStrategy ? { capacityProviderStrategy: fields.capacityProviderStrategy } : { launchType: fields.launchType ?? 'FARGATE' }),
      ...(subnet.length
        ? { networkConfiguration: { awsvpcConfiguration: { subnets: subnet, securityGroups: fields.securityGroups.length ? fields.securityGroups : undefined, assignPublicIp: fields.assignPublicIp ? 'ENABLED' : 'DISABLED' } } }
        : {}),
      overrides: { containerOverrides: [{ name: fields.containerName, environment: Object.entries(env).map(([name, value]) => ({ name, value })) }] },
    };
  }

  /**
   * The pool's task definition: the one it names, else runyard's for its config hash: found by
   * the hash tag on the family's latest revision, registered when missing. Once per hash.
   */
  private taskDefinition(spec: LaunchSpec, api: EcsApi, extraEnv: Record<string, string> = {}): Promise<string> {
    const fields = ecsFields(spec.pool);
    if (fields.taskDefinition) return Promise.resolve(fields.taskDefinition);
    const { input, hash } = taskDefinitionFor(spec.pool, spec.classSize, spec.instanceId, extraEnv);
    const key = `${EcsApi.key(fields)}|${input.family}|${hash}`;
    let found = this.definitions.get(key);
    if (!found) {
      found = (async () => {
        try {
          const cur = await api.send<DescribeTaskDefinitionCommandOutput>('DescribeTaskDefinition', new DescribeTaskDefinitionCommand({ taskDefinition: input.family, include: ['TAGS'] }));
          const arn = cur.taskDefinition?.taskDefinitionArn;
          if (arn && cur.taskDefinition?.status === 'ACTIVE' && cur.tags?.some((t) => t.key === TAG_CONFIG_HASH && t.value === hash)) return arn;
        } catch (err) {
          if (!(err instanceof EcsApiError && err.code === 'ClientException')) throw err; // ClientException: no such family yet
        }
        const reg = await api.send<RegisterTaskDefinitionCommandOutput>('RegisterTaskDefinition', new RegisterTaskDefinitionCommand(input));
        this.opts.log.info({ pool: spec.pool.name, taskDefinition: reg.taskDefinition?.taskDefinitionArn, hash }, 'task definition registered');
        return reg.taskDefinition!.taskDefinitionArn!;
      })();
      found.catch(() => this.definitions.delete(key));
      this.definitions.set(key, found);
    }
    return found;
  }

  // ---- tracking ----------------------------------------------------------------------------

  private watch(w: Omit<Watched, 'ended' | 'end'>) {
    if (this.watched.has(w.runnerId) || this.closed) return;
    let end = () => {};
    const ended = new Promise<void>((ok) => (end = ok));
    this.watched.set(w.runnerId, { ...w, ended, end });
    this.poller ??= setInterval(() => void this.poll(), this.opts.pollMs ?? 5_000);
    this.poller.unref();
  }

  /** Describes every watched task, 100 per call per cluster; reports those that stopped or went missing. */
  private poll(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.polling ??= this.pollNow().finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async pollNow(): Promise<void> {
    {
      const groups = new Map<string, Watched[]>();
      for (const w of this.watched.values()) {
        const key = `${EcsApi.key(w.api.fields)}|${w.cluster}`;
        groups.set(key, [...(groups.get(key) ?? []), w]);
      }
      for (const ws of groups.values()) {
        for (let i = 0; i < ws.length; i += DESCRIBE_MAX) {
          const batch = ws.slice(i, i + DESCRIBE_MAX);
          let res: DescribeTasksCommandOutput;
          try {
            res = await batch[0]!.api.send<DescribeTasksCommandOutput>('DescribeTasks', new DescribeTasksCommand({ cluster: batch[0]!.cluster, tasks: batch.map((w) => w.arn) }));
          } catch (err) {
            this.opts.log.warn({ err }, 'could not describe runner tasks; trying again');
            continue;
          }
          const byArn = new Map((res.tasks ?? []).map((t) => [t.taskArn!, t]));
          const missing = new Set((res.failures ?? []).filter((f) => f.reason === 'MISSING').map((f) => f.arn));
          for (const w of batch) {
            const t = byArn.get(w.arn);
            // a task on its way down with a stop code (a spot reclaim's two-minute warning) has lost its runner already
            if (t && (t.lastStatus === 'STOPPED' || (t.desiredStatus === 'STOPPED' && t.stopCode))) this.ended(w, stopDetail(t));
            // ECS answers MISSING for a task it forgot; an answer without the task at all means the same
            else if (!t) this.ended(w, `ECS task is ${missing.has(w.arn) ? 'MISSING' : 'not known'} (stopped and forgotten by ECS)`);
          }
        }
      }
    }
  }

  private ended(w: Watched, detail: string) {
    if (!this.watched.has(w.runnerId)) return;
    this.watched.delete(w.runnerId);
    w.end();
    this.opts.log.info({ runnerId: w.runnerId, task: w.arn, detail }, 'runner task ended');
    this.services.get(w.pool)?.ended(w.runnerId);
    for (const l of this.listeners) l(w.runnerId, detail);
  }

  /** Tasks of this instance that are meant to run, with their tags, in every cluster it knows. */
  private async liveTasks(): Promise<{ where: Where; task: Task }[]> {
    const out: { where: Where; task: Task }[] = [];
    for (const where of this.clusters.values()) {
      const arns: string[] = [];
      let nextToken: string | undefined;
      do {
        const page = await where.api.send<ListTasksCommandOutput>('ListTasks', new ListTasksCommand({ cluster: where.cluster, startedBy: this.startedBy, desiredStatus: 'RUNNING', maxResults: 100, nextToken }));
        arns.push(...(page.taskArns ?? []));
        nextToken = page.nextToken;
      } while (nextToken);
      for (const svc of this.services.values()) if (svc.where(where)) arns.push(...(await svc.taskArns()));
      for (let i = 0; i < arns.length; i += DESCRIBE_MAX) {
        const res = await where.api.send<DescribeTasksCommandOutput>('DescribeTasks', new DescribeTasksCommand({ cluster: where.cluster, tasks: arns.slice(i, i + DESCRIBE_MAX), include: ['TAGS'] }));
        for (const task of res.tasks ?? []) out.push({ where, task });
      }
    }
    return out;
  }

  /**
   * The runner tasks of this instance that still run (a fresh provider adopts and watches them).
   * A task of ours left without a runner tag (the control plane died between RunTask and
   * TagResource) cannot register: it is stopped.
   */
  learnPools(pools: PoolConfig[]): void {
    for (const p of pools) if (p.provider === 'ecs' && p.ecs) this.where(p.ecs);
  }

  async list(): Promise<ProviderRunner[]> {
    const live = await this.liveTasks();
    // Watched tasks that stopped (and so are missing above) are reported with their stop code
    // first, not as merely "not found"; a poll already in flight may have looked too early.
    const watchedBefore = new Set(this.watched.keys());
    await this.polling?.catch(() => {});
    await this.poll();
    const out: ProviderRunner[] = [];
    for (const { where, task } of live) {
      const tag = (k: string) => task.tags?.find((t) => t.key === k)?.value;
      const runnerId = tag(TAG_RUNNER);
      const startedAt = task.createdAt?.getTime() ?? Date.now();
      if (!runnerId) {
        if (this.launching === 0 && Date.now() - startedAt > UNTAGGED_GRACE_MS && !task.group?.startsWith('service:'))
          await this.stopTask(where, task.taskArn!, 'runyard: launch never finished (no runner tag)').catch(() => {});
        continue;
      }
      if (tag(TAG_INSTANCE) && tag(TAG_INSTANCE) !== this.opts.instanceId) continue;
      const alive = task.lastStatus !== 'STOPPED' && task.desiredStatus !== 'STOPPED' && !(watchedBefore.has(runnerId) && !this.watched.has(runnerId));
      const pool = tag(TAG_POOL) ?? '';
      if (alive) {
        this.watch({ runnerId, arn: task.taskArn!, pool, api: where.api, cluster: where.cluster, startedAt });
        if (task.group?.startsWith('service:')) this.services.get(pool)?.adopt(runnerId, task.taskArn!);
      }
      out.push({ runnerId, ref: this.ref({ cluster: where.cluster, arn: task.taskArn! }), pool, alive, startedAt });
    }
    return out;
  }

  async describe(runnerId: string): Promise<ProviderRunner | undefined> {
    return (await this.list()).find((r) => r.runnerId === runnerId);
  }

  private stopTask(where: Where, arn: string, reason: string) {
    return where.api.send('StopTask', new StopTaskCommand({ cluster: where.cluster, task: arn, reason: reason.slice(0, 255) }));
  }

  /**
   * Gives the runner the drain grace to finish and exit by itself (the scheduler has asked it to
   * drain), then stops its task with a reason: ECS sends SIGTERM, and SIGKILL after the task
   * definition's stopTimeout. "Already gone" is success.
   */
  async terminate(runnerId: string, opts: { graceMs: number }): Promise<void> {
    let w = this.watched.get(runnerId);
    if (!w) {
      await this.list();
      w = this.watched.get(runnerId);
    }
    if (!w) return;
    const pollMs = Math.min(1_000, this.opts.pollMs ?? 5_000);
    const deadline = Date.now() + opts.graceMs;
    while (this.watched.has(runnerId) && Date.now() < deadline) {
      await Promise.race([w.ended, this.sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())))]);
      if (this.watched.has(runnerId)) await this.poll();
    }
    if (!this.watched.has(runnerId)) return;
    const svc = this.services.get(w.pool);
    if (svc) await svc.release(runnerId);
    try {
      await this.stopTask(w, w.arn, `runyard: runner ${runnerId} stopped after its ${Math.round(opts.graceMs / 1000)}s drain grace`);
    } catch (err) {
      // the task is gone already: success
      if (!(err instanceof EcsApiError && err.code === 'InvalidParameterException')) throw err;
    }
    this.ended(w, 'ECS task stopped by runyard');
  }

  async close(): Promise<void> {
    // Tasks outlive the control plane: a restart adopts them. Only stop watching.
    this.closed = true;
    clearInterval(this.poller);
    for (const s of this.services.values()) s.close();
    for (const w of this.watched.values()) w.end();
    this.watched.clear();
    for (const api of this.apis.values()) api.close();
  }
}

/** What a stopped task's stop code and reason mean for its runner. */
export function stopDetail(t: Task): string {
  const code = t.stopCode ?? 'unknown';
  const reason = t.stoppedReason ?? t.containers?.[0]?.reason ?? '';
  if (code === 'SpotInterruption') return `ECS task stopped by a spot interruption (${code}: ${reason})`;
  if (code === 'TaskFailedToStart') return `ECS task failed to start (${reason})`;
  const exit = t.containers?.[0]?.exitCode;
  return `ECS task stopped (${code}: ${reason}${exit !== undefined ? `; exit code ${exit}` : ''})`;
}
