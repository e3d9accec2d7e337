import {
  CreateServiceCommand,
  DescribeServicesCommand,
  DescribeTasksCommand,
  ListTasksCommand,
  TagResourceCommand,
  UpdateServiceCommand,
  type DescribeServicesCommandOutput,
  type DescribeTasksCommandOutput,
  type ListTasksCommandOutput,
} from '@aws-sdk/client-ecs';
import type { LaunchSpec } from '../provider.js';
import type { Logger } from '../../lib/logger.js';
import type { EcsApi } from './ecs-api.js';
import type { EcsPoolFields } from './pool-config.js';
import { TAG_INSTANCE, TAG_LAUNCH_TOKEN, TAG_POOL, TAG_RUNNER } from './task-definition.js';

export interface EcsServiceOptions {
  pool: string;
  fields: EcsPoolFields;
  api: EcsApi;
  log: Logger;
  startedBy: string;
  sleep: (ms: number) => Promise<void>;
  taskDefinition: (spec: LaunchSpec) => Promise<string>;
  watch: (runnerId: string, arn: string, pool: string) => void;
  pollMs?: number;
}

interface Pending {
  spec: LaunchSpec;
  ok: (v: { ref: string }) => void;
  fail: (e: Error) => void;
  deadline: number;
}

/**
 * `mode: service`: one ECS service per pool, its desired count the pool's runners (those with a
 * task plus those waiting for one), so the scheduler's plan scales it from zero and back to zero.
 * A service's tasks all share one task definition and have no overrides: each new task is
 * claimed for a waiting runner by tagging it with the runner id and its launch token, which the
 * agent reads from the task metadata endpoint.
 */
export class EcsService {
  private pending: Pending[] = [];
  private assigned = new Map<string, string>();
  private desired: number | undefined;
  private exists = false;
  private loop: Promise<void> | undefined;
  private closed = false;
  private taskDef: string | undefined;

  constructor(private opts: EcsServiceOptions) {}

  get name(): string {
    return `runyard-${this.opts.pool}`;
  }

  where(w: { api: EcsApi; cluster: string }): boolean {
    return w.api === this.opts.api && w.cluster === this.opts.fields.cluster;
  }

  /** Resolves with the task ARN claimed for the runner. */
  create(spec: LaunchSpec): Promise<{ ref: string }> {
    return new Promise((ok, fail) => {
      this.pending.push({ spec, ok, fail, deadline: Date.now() + spec.pool.startTimeout });
      this.kick();
    });
  }

  /** A runner found on a restart: it keeps its place in the desired count. */
  adopt(runnerId: string, arn: string): void {
    this.assigned.set(runnerId, arn);
  }

  /** The runner is being stopped by runyard: one fewer task wanted. */
  async release(runnerId: string): Promise<void> {
    this.assigned.delete(runnerId);
    await this.sync();
  }

  /** Its task ended: the service must not start a replacement for it. */
  ended(runnerId: string): void {
    if (this.assigned.delete(runnerId)) this.kick();
  }

  private kick() {
    if (this.loop || this.closed) {
      if (this.loop) this.again = true;
      return;
    }
    this.loop = this.run().finally(() => {
      this.loop = undefined;
      if (this.again && !this.closed) {
        this.again = false;
        this.kick();
      }
    });
  }
  private again = false;

  private async run() {
    do {
      this.again = false;
      try {
        await this.sync();
        if (this.pending.length) await this.claimNewTasks();
      } catch (err) {
        this.opts.log.warn({ err, service: this.name }, 'ECS service step failed; trying again');
      }
      const now = Date.now();
      for (const p of this.pending.filter((x) => x.deadline < now)) {
        this.pending.splice(this.pending.indexOf(p), 1);
        p.fail(new Error(`ECS service ${this.name} started no task for the runner within the pool's startTimeout`));
      }
      if (this.pending.length && !this.closed) await this.opts.sleep(this.opts.pollMs ?? 250);
    } while ((this.pending.length || this.again) && !this.closed);
  }

  /** Creates the service on first use; sets its desired count when it changed. */
  private async sync() {
    const want = this.assigned.size + this.pending.length;
    if (!this.exists) {
      const f = this.opts.fields;
      const d = await this.opts.api.send<DescribeServicesCommandOutput>('DescribeServices', new DescribeServicesCommand({ cluster: f.cluster, services: [this.name] }));
      const cur = d.services?.find((s) => s.status === 'ACTIVE');
      const first = this.pending[0]?.spec;
      if (cur) {
        this.desired = cur.desiredCount;
        this.exists = true;
      } else if (first) {
        this.taskDef = await this.opts.taskDefinition(first);
        await this.opts.api.send('CreateService', new CreateServiceCommand({
          cluster: f.cluster,
          serviceName: this.name,
          taskDefinition: this.taskDef,
          desiredCount: want,
          ...(f.capacityProviderStrategy ? { capacityProviderStrategy: f.capacityProviderStrategy } : { launchType: f.launchType ?? 'FARGATE' }),
          ...(f.subnets.length ? { networkConfiguration: { awsvpcConfiguration: { subnets: f.subnets, securityGroups: f.securityGroups.length ? f.securityGroups : undefined, assignPublicIp: f.assignPublicIp ? 'ENABLED' : 'DISABLED' } } } : {}),
          tags: [{ key: TAG_POOL, value: this.opts.pool }],
        }));
        this.desired = want;
        this.exists = true;
        this.opts.log.info({ service: this.name, desiredCount: want }, 'ECS service created');
      } else return; // no service and nothing wanted
    }
    const first = this.pending[0]?.spec;
    const def = first ? await this.opts.taskDefinition(first) : undefined;
    if (def && def !== this.taskDef) {
      // a runner of a changed pool config (new hash): the service rolls onto its task definition
      await this.opts.api.send('UpdateService', new UpdateServiceCommand({ cluster: this.opts.fields.cluster, service: this.name, taskDefinition: def }));
      this.taskDef = def;
    }
    if (this.desired !== want) {
      await this.opts.api.send('UpdateService', new UpdateServiceCommand({ cluster: this.opts.fields.cluster, service: this.name, desiredCount: want }));
      this.opts.log.info({ service: this.name, from: this.desired, desiredCount: want }, 'ECS service scaled');
      this.desired = want;
    }
  }

  async taskArns(): Promise<string[]> {
    const out: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await this.opts.api.send<ListTasksCommandOutput>('ListTasks', new ListTasksCommand({ cluster: this.opts.fields.cluster, serviceName: this.name, desiredStatus: 'RUNNING', maxResults: 100, nextToken }));
      out.push(...(page.taskArns ?? []));
      nextToken = page.nextToken;
    } while (nextToken);
    return out;
  }

  /** Tags each new, unclaimed task of the service with a waiting runner's id and launch token. */
  private async claimNewTasks() {
    const arns = await this.taskArns();
    if (!arns.length) return;
    const res = await this.opts.api.send<DescribeTasksCommandOutput>('DescribeTasks', new DescribeTasksCommand({ cluster: this.opts.fields.cluster, tasks: arns.slice(0, 100), include: ['TAGS'] }));
    const taken = new Set(this.assigned.values());
    for (const t of res.tasks ?? []) {
      if (!this.pending.length) return;
      if (taken.has(t.taskArn!) || t.tags?.some((x) => x.key === TAG_RUNNER) || t.desiredStatus !== 'RUNNING') continue;
      const p = this.pending.shift()!;
      await this.opts.api.send('TagResource', new TagResourceCommand({
        resourceArn: t.taskArn!,
        tags: [
          { key: TAG_RUNNER, value: p.spec.runnerId },
          { key: TAG_LAUNCH_TOKEN, value: p.spec.registrationToken },
          { key: TAG_INSTANCE, value: p.spec.instanceId },
          { key: TAG_POOL, value: this.opts.pool },
        ],
      }));
      this.assigned.set(p.spec.runnerId, t.taskArn!);
      this.opts.watch(p.spec.runnerId, t.taskArn!, this.opts.pool);
      p.ok({ ref: t.taskArn! });
    }
  }

  close(): void {
    this.closed = true;
    for (const p of this.pending.splice(0)) p.fail(new Error('the ecs provider closed'));
  }
}
