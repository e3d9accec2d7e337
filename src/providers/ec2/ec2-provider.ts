import { createHash } from 'node:crypto';
import {
  CreateTagsCommand,
  ModifyInstanceAttributeCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type Filter,
  type Instance,
  type Tag,
} from '@aws-sdk/client-ec2';
import type { LaunchSpec, Provider, ProviderRunner } from '../provider.js';
import type { PoolConfig } from '../../config/schema.js';
import type { Logger } from '../../lib/logger.js';
import { systemClock, sleep as realSleep, type Clock } from '../../lib/clock.js';
import { Serial } from '../../lib/serial.js';
import { CAPACITY, Ec2Api, Ec2ApiError, type Ec2ApiOptions } from './ec2-api.js';
import { instanceTypesFor, type Ec2PoolFields } from './pool-config.js';
import { userData } from './user-data.js';
import { pickWarm, refreshPlan, releaseDecision, type PoolInstance, type WarmPolicy } from './warm-pool.js';
import { ApiCallTally } from '../api-calls.js';

export const TAG = {
  instance: 'runyard:instance',
  owner: 'runyard:owner',
  pool: 'runyard:pool',
  runner: 'runyard:runner',
  config: 'runyard:config',
  created: 'runyard:created',
  expires: 'runyard:expires',
} as const;

const LIVE = ['pending', 'running'];

export interface Ec2ProviderOptions {
  /** The database's instance id: every instance is tagged with it. */
  instanceId: string;
  log: Logger;
  /** Pools known at start (the config file's), so a restarted server finds their instances. */
  pools?: PoolConfig[];
  credentials?: Ec2ApiOptions['credentials'];
  clock?: Clock;
  sleep?: (ms: number) => Promise<void>;
  /** overrides the pools' ec2.pollInterval */
  pollMs?: number;
  /** retry policy of the EC2 calls (ec2-api.ts) */
  maxAttempts?: number;
  baseDelayMs?: number;
}

/** No subnet and instance type of the pool had capacity: worth trying again later. */
export class Ec2CapacityError extends Error {
  readonly retryable = true;
  constructor(message: string, readonly cause?: unknown) {
    super(message);
    this.name = 'Ec2CapacityError';
  }
}

const tagOf = (i: Instance, key: string) => i.Tags?.find((t) => t.Key === key)?.Value;

/** What of a pool shapes its instances: a stopped instance launched otherwise is not reused. */
export function launchHash(pool: PoolConfig): string {
  const e = pool.ec2!;
  const shaping = { class: pool.class ?? null, launchTemplate: e.launchTemplate ?? null, imageId: e.imageId ?? null, instanceType: e.instanceType ?? null, instanceTypes: e.instanceTypes, subnets: e.subnets, securityGroups: e.securityGroups, iamInstanceProfile: e.iamInstanceProfile ?? null, spot: e.spot, agentDir: e.agentDir };
  return createHash('sha256').update(JSON.stringify(shaping)).digest('hex').slice(0, 16);
}

/**
 * Runners on EC2 instances, with a warm pool of stopped ones (warm-pool.ts). Instances carry tags
 * naming the runyard instance, the owner, the pool, the runner and the launch config, so a
 * restarted control plane finds them again (all state lives in EC2). A start takes a stopped
 * instance of the pool first: its user data is replaced while it is stopped (a new runner id and a
 * fresh single-use launch token), then StartInstances; on no capacity it launches a new one,
 * trying each instance type and subnet in turn. Instance states are polled (EC2 pushes nothing
 * without EventBridge): one DescribeInstances per region and poll finds runners whose instance
 * stopped, was interrupted (spot) or went away, plus a DescribeInstanceStatus for failing checks.
 */
export class Ec2Provider implements Provider {
  readonly name = 'ec2';
  readonly owner: string;
  private apis = new Map<string, Ec2Api>();
  private pools = new Map<string, PoolConfig>();
  /** runner id → its instance and the API that sees it */
  private watches = new Map<string, { instance: string; api: string }>();
  /** stopped instances being taken by a start: a second start must not take them too */
  private claimed = new Set<string>();
  /** instances being released or terminated by this provider */
  private releasing = new Set<string>();
  /** released instances on their way into the warm pool: a start may take one once it is stopped */
  private toPool = new Set<string>();
  /** ... and those a start took while their release still waited: the release lets go of them */
  private reclaimed = new Set<string>();
  private listeners: ((runnerId: string, detail: string) => void)[] = [];
  private clock: Clock;
  private sleep: (ms: number) => Promise<void>;
  private timer?: NodeJS.Timeout;
  private closed = false;
  private polling?: Promise<void>;
  /** one poll at a time (the timer's and list()'s): a second caller waits, then looks afresh */
  private polls = new Serial();
  private releases = new Map<string, Promise<void>>();

  constructor(private opts: Ec2ProviderOptions) {
    this.owner = createHash('sha256').update(`ec2:${opts.instanceId}`).digest('hex').slice(0, 12);
    this.clock = opts.clock ?? systemClock;
    this.sleep = opts.sleep ?? ((ms) => realSleep(ms));
    for (const p of opts.pools ?? []) if (p.provider === 'ec2' && p.ec2) this.learn(p);
  }

  /** API calls made so far, by operation, over every region and endpoint (runyard_provider_api_calls_total). */
  apiCalls(): Record<string, number> {
    return ApiCallTally.sum([...this.apis.values()].map((a) => a.tally));
  }

  private learn(pool: PoolConfig): Ec2Api {
    this.pools.set(pool.name, pool);
    const e = pool.ec2!;
    const key = `${e.region}|${e.endpoint ?? ''}`;
    let api = this.apis.get(key);
    if (!api) {
      api = new Ec2Api({ region: e.region, endpoint: e.endpoint, credentials: this.opts.credentials, log: this.opts.log, sleep: this.sleep, maxAttempts: this.opts.maxAttempts, baseDelayMs: this.opts.baseDelayMs });
      this.apis.set(key, api);
    }
    this.schedulePoll();
    return api;
  }

  private apiKey(api: Ec2Api): string {
    return [...this.apis].find(([, a]) => a === api)![0];
  }

  private ownFilters(): Filter[] {
    return [
      { Name: `tag:${TAG.instance}`, Values: [this.opts.instanceId] },
      { Name: `tag:${TAG.owner}`, Values: [this.owner] },
    ];
  }

  private ref(instanceId: string) {
    return `ec2:${instanceId}@${this.owner}`;
  }

  private policy(poolName: string): WarmPolicy | undefined {
    const p = this.pools.get(poolName);
    if (!p?.ec2) return undefined;
    return { pool: p.name, config: launchHash(p), stopped: p.ec2.spot ? 0 : p.ec2.warmPool.stopped };
  }

  private poolInstance(i: Instance): PoolInstance {
    return {
      id: i.InstanceId!,
      state: i.State?.Name ?? 'unknown',
      pool: tagOf(i, TAG.pool) ?? '',
      config: tagOf(i, TAG.config) ?? '',
      createdAt: Number(tagOf(i, TAG.created) ?? i.LaunchTime?.getTime() ?? 0),
      expiresAt: Number(tagOf(i, TAG.expires) ?? Number.MAX_SAFE_INTEGER),
      spot: i.InstanceLifecycle === 'spot',
    };
  }

  onExit(listener: (runnerId: string, detail: string) => void): void {
    this.listeners.push(listener);
  }

  async create(spec: LaunchSpec): Promise<{ ref: string }> {
    const cfg = spec.pool.ec2;
    if (!cfg) throw new Error(`pool ${spec.pool.name} has no ec2 block: the ec2 provider needs one`);
    const api = this.learn(spec.pool);
    const policy = this.policy(spec.pool.name)!;
    const boot = userData({ serverUrl: spec.serverUrl, registrationToken: spec.registrationToken, runnerId: spec.runnerId, name: spec.name, instanceId: spec.instanceId, env: spec.pool.env, agentDir: cfg.agentDir });
    const now = this.clock.now();
    if (policy.stopped > 0) {
      const stopped = await api.describe([...this.ownFilters(), { Name: `tag:${TAG.pool}`, Values: [spec.pool.name] }, { Name: 'instance-state-name', Values: ['stopped'] }]);
      const busy = new Set([...this.claimed, ...[...this.releasing].filter((id) => !this.toPool.has(id))]);
      for (const cand of pickWarm(stopped.map((i) => this.poolInstance(i)), policy, busy, now)) {
        this.claimed.add(cand.id);
        if (this.releasing.has(cand.id)) this.reclaimed.add(cand.id);
        try {
          // the old runner's token is spent: the next boot reads the new runner's user data
          // EC2 wants this value base64 inside the blob (which the SDK encodes once more)
          await api.call('ModifyInstanceAttribute', (c) => c.send(new ModifyInstanceAttributeCommand({ InstanceId: cand.id, UserData: { Value: Buffer.from(Buffer.from(boot).toString('base64')) } })));
          await api.call('StartInstances', (c) => c.send(new StartInstancesCommand({ InstanceIds: [cand.id] })));
          // tagged once started: a start refused for capacity leaves the instance as it was
          await api.call('CreateTags', (c) => c.send(new CreateTagsCommand({ Resources: [cand.id], Tags: [{ Key: TAG.runner, Value: spec.runnerId }, { Key: 'Name', Value: spec.name }] })));
          this.watches.set(spec.runnerId, { instance: cand.id, api: this.apiKey(api) });
          this.opts.log.info({ runnerId: spec.runnerId, instance: cand.id, pool: spec.pool.name }, 'runner instance started from the warm pool');
          return { ref: this.ref(cand.id) };
        } catch (err) {
          const code = (err as Ec2ApiError).code;
          if (CAPACITY.has(code)) {
            this.opts.log.warn({ instance: cand.id, code }, 'no capacity to start a stopped instance; launching a new one');
            break;
          }
          // taken or gone meanwhile (another server, a refresh): try the next
          if (code === 'IncorrectInstanceState' || code?.startsWith('InvalidInstanceID')) continue;
          throw err;
        } finally {
          this.claimed.delete(cand.id);
        }
      }
    }
    return this.launch(api, spec, cfg, boot, policy, now);
  }

  private async launch(api: Ec2Api, spec: LaunchSpec, cfg: Ec2PoolFields, boot: string, policy: WarmPolicy, now: number): Promise<{ ref: string }> {
    const types: (string | undefined)[] = instanceTypesFor(cfg, spec.pool.class);
    const subnets: (string | undefined)[] = cfg.subnets;
    const tags: Tag[] = [
      { Key: TAG.instance, Value: spec.instanceId },
      { Key: TAG.owner, Value: this.owner },
      { Key: TAG.pool, Value: spec.pool.name },
      { Key: TAG.runner, Value: spec.runnerId },
      { Key: TAG.config, Value: policy.config },
      { Key: TAG.created, Value: String(now) },
      { Key: TAG.expires, Value: String(now + spec.pool.maxLifetime) },
      { Key: 'Name', Value: spec.name },
    ];
    const profile = cfg.iamInstanceProfile;
    const tried: string[] = [];
    let last: unknown;
    let attempt = 0;
    for (const type of types.length ? types : [undefined])
      for (const subnet of subnets.length ? subnets : [undefined]) {
        attempt += 1;
        try {
          const out = await api.call('RunInstances', (c) =>
            c.send(
              new RunInstancesCommand({
                MinCount: 1,
                MaxCount: 1,
                // one token per runner and placement: a lost answer asked again returns the same instance
                ClientToken: `${spec.runnerId}-${attempt}`,
                ImageId: cfg.imageId,
                InstanceType: type as never,
                LaunchTemplate: cfg.launchTemplate ? { LaunchTemplateId: cfg.launchTemplate.id, LaunchTemplateName: cfg.launchTemplate.name, Version: cfg.launchTemplate.version } : undefined,
                SubnetId: subnet,
                SecurityGroupIds: cfg.securityGroups.length ? cfg.securityGroups : undefined,
                IamInstanceProfile: profile ? (profile.startsWith('arn:') ? { Arn: profile } : { Name: profile }) : undefined,
                InstanceMarketOptions: cfg.spot ? { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate' } } : undefined,
                // the agent powers off when it is done: stopped for the warm pool (spot cannot stop)
                InstanceInitiatedShutdownBehavior: cfg.spot ? 'terminate' : 'stop',
                UserData: Buffer.from(boot).toString('base64'),
                TagSpecifications: [{ ResourceType: 'instance', Tags: tags }],
              }),
            ),
          );
          const id = out.Instances?.[0]?.InstanceId;
          if (!id) throw new Error(`EC2 RunInstances at ${api.where} answered without an instance`);
          this.watches.set(spec.runnerId, { instance: id, api: this.apiKey(api) });
          this.opts.log.info({ runnerId: spec.runnerId, instance: id, pool: spec.pool.name, instanceType: type, subnet }, 'runner instance launched');
          return { ref: this.ref(id) };
        } catch (err) {
          if (!(err instanceof Ec2ApiError) || !CAPACITY.has(err.code)) throw err;
          last = err;
          tried.push(`${type ?? 'template type'} in ${subnet ?? 'the default subnet'}`);
          this.opts.log.warn({ pool: spec.pool.name, instanceType: type, subnet, code: err.code }, 'no EC2 capacity; trying the next type or subnet');
        }
      }
    throw new Ec2CapacityError(`no EC2 capacity for pool ${spec.pool.name}: tried ${tried.join(', ')}`, last);
  }

  /** Live runner instances (pending or running) of this runyard instance; running ones are adopted. */
  learnPools(pools: PoolConfig[]): void {
    for (const p of pools) if (p.provider === 'ec2' && p.ec2) this.learn(p);
  }

  async list(): Promise<ProviderRunner[]> {
    const live: { key: string; i: Instance }[] = [];
    for (const [key, api] of this.apis) for (const i of await api.describe([...this.ownFilters(), { Name: 'instance-state-name', Values: LIVE }])) live.push({ key, i });
    // Watched instances that ended (and so are missing above) are reported with EC2's reason
    // first, not as merely "not found".
    const watchedBefore = new Set(this.watches.keys());
    await this.polls.run(() => this.poll());
    const out: ProviderRunner[] = [];
    for (const { key, i } of live) {
      const runnerId = tagOf(i, TAG.runner);
      if (!runnerId || this.releasing.has(i.InstanceId!)) continue;
      if (watchedBefore.has(runnerId) && !this.watches.has(runnerId)) continue; // ended since
      if (!this.watches.has(runnerId)) this.watches.set(runnerId, { instance: i.InstanceId!, api: key });
      out.push({ runnerId, ref: this.ref(i.InstanceId!), pool: tagOf(i, TAG.pool) ?? '', alive: true, startedAt: Number(tagOf(i, TAG.created) ?? i.LaunchTime?.getTime() ?? 0) });
    }
    return out;
  }

  async describe(runnerId: string): Promise<ProviderRunner | undefined> {
    return (await this.list()).find((r) => r.runnerId === runnerId);
  }

  /**
   * Releases the runner's instance: stopped into the warm pool while it has room, else terminated.
   * The OS shutdown of a stop sends the agent SIGTERM (it drains); after `graceMs` the stop is forced.
   */
  async terminate(runnerId: string, opts: { graceMs: number }): Promise<void> {
    const w = this.watches.get(runnerId);
    this.watches.delete(runnerId);
    const apis = w ? [this.apis.get(w.api)!] : [...this.apis.values()];
    for (const api of apis) {
      const found = await api.describe([...this.ownFilters(), { Name: `tag:${TAG.runner}`, Values: [runnerId] }, { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }]);
      for (const i of found) await this.release(api, i, opts.graceMs);
    }
  }

  /** One release at a time per pool, so two cannot both take the warm pool's last place. */
  private release(api: Ec2Api, inst: Instance, graceMs: number): Promise<void> {
    const pool = tagOf(inst, TAG.pool) ?? '';
    const run = (this.releases.get(pool) ?? Promise.resolve()).then(() => this.releaseNow(api, inst, graceMs));
    const settled = run.catch(() => {});
    this.releases.set(pool, settled);
    void settled.then(() => {
      if (this.releases.get(pool) === settled) this.releases.delete(pool);
    });
    return run;
  }

  private async releaseNow(api: Ec2Api, inst: Instance, graceMs: number): Promise<void> {
    const id = inst.InstanceId!;
    this.releasing.add(id);
    try {
      const pool = tagOf(inst, TAG.pool) ?? '';
      const others = await api.describe([...this.ownFilters(), { Name: `tag:${TAG.pool}`, Values: [pool] }, { Name: 'instance-state-name', Values: ['stopping', 'stopped'] }]);
      const d = releaseDecision(this.poolInstance(inst), others.map((o) => this.poolInstance(o)), this.policy(pool), this.clock.now());
      this.opts.log.info({ instance: id, pool, action: d.action, reason: d.reason }, 'runner instance released');
      if (d.action === 'terminate') return await this.terminateInstance(api, id);
      this.toPool.add(id);
      const state = inst.State?.Name;
      if (state === 'stopped') return;
      if (state !== 'stopping') await api.call('StopInstances', (c) => c.send(new StopInstancesCommand({ InstanceIds: [id] })));
      // a start may take it from the pool the moment it is stopped, before this wait sees it
      const taken = () => this.reclaimed.has(id);
      if (await this.waitFor(api, id, ['stopped', 'terminated'], graceMs, taken)) return;
      if (taken()) return;
      // the agent did not drain within the grace: power off hard
      await api.call('StopInstances', (c) => c.send(new StopInstancesCommand({ InstanceIds: [id], Force: true })));
      await this.waitFor(api, id, ['stopped', 'terminated'], 60_000, taken);
    } finally {
      this.releasing.delete(id);
      this.toPool.delete(id);
      this.reclaimed.delete(id);
    }
  }

  private async terminateInstance(api: Ec2Api, id: string): Promise<void> {
    try {
      await api.call('TerminateInstances', (c) => c.send(new TerminateInstancesCommand({ InstanceIds: [id] })));
    } catch (err) {
      if ((err as Ec2ApiError).code === 'InvalidInstanceID.NotFound') return; // already gone
      throw err;
    }
  }

  /** Polls one instance until it reaches one of `states`; false after `timeoutMs`. */
  /** Polls until the instance is in one of `states` (true), `done()` says to stop (true), or the timeout (false). */
  private async waitFor(api: Ec2Api, id: string, states: string[], timeoutMs: number, done: () => boolean = () => false): Promise<boolean> {
    const deadline = this.clock.now() + timeoutMs;
    for (;;) {
      const [i] = await api.describe([{ Name: 'instance-id', Values: [id] }]);
      if (done() || !i || states.includes(i.State?.Name ?? '')) return true;
      if (this.clock.now() >= deadline) return false;
      await this.sleep(250);
    }
  }

  private pollMs(): number {
    if (this.opts.pollMs !== undefined) return this.opts.pollMs;
    return Math.min(...[...this.pools.values()].map((p) => p.ec2!.pollInterval), 60_000);
  }

  private schedulePoll() {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.polling = this.polls.run(() => this.poll())
        .catch((err) => this.opts.log.warn({ err }, 'EC2 poll failed; trying again at the next'))
        .finally(() => {
          this.polling = undefined;
          this.schedulePoll();
        });
    }, this.pollMs());
    this.timer.unref();
  }

  /**
   * One look at every instance of this runyard instance: runners whose instance left `running`
   * are reported ended (with EC2's reason: shut down by its agent, spot interruption, terminated
   * elsewhere); a runner instance failing its status checks is lost (reported, then terminated);
   * refresh terminates stopped instances past their lifetime, of an old config, or beyond the
   * warm pool's size. Running instances are never terminated here: their runners may hold jobs.
   */
  async poll(): Promise<void> {
    for (const [key, api] of this.apis) {
      const all = await api.describe(this.ownFilters());
      const byId = new Map(all.map((i) => [i.InstanceId!, i]));
      for (const i of all) {
        const runnerId = tagOf(i, TAG.runner);
        if (runnerId && LIVE.includes(i.State?.Name ?? '') && !this.watches.has(runnerId) && !this.releasing.has(i.InstanceId!)) this.watches.set(runnerId, { instance: i.InstanceId!, api: key });
      }
      const watched = [...this.watches].filter(([, w]) => w.api === key);
      for (const [runnerId, w] of watched) {
        const i = byId.get(w.instance);
        const state = i?.State?.Name ?? 'gone';
        if (LIVE.includes(state) && tagOf(i!, TAG.runner) === runnerId) continue;
        if (this.releasing.has(w.instance) || this.claimed.has(w.instance)) continue;
        this.watches.delete(runnerId);
        const reason = i?.StateReason?.Message ?? i?.StateTransitionReason ?? '';
        const spot = /Spot/i.test(i?.StateReason?.Code ?? '');
        const detail = !i ? `EC2 instance ${w.instance} was not found` : spot ? `EC2 instance ${w.instance} was interrupted (spot): ${reason}` : `EC2 instance ${w.instance} is ${state}${reason ? `: ${reason}` : ''}`;
        this.opts.log.info({ runnerId, instance: w.instance, state, reason }, 'runner instance ended');
        this.emitExit(runnerId, detail);
        // shut down by its agent (done, deleted): back to the pool or terminated
        if (i && (state === 'stopped' || state === 'stopping')) await this.release(api, i, 0).catch((err) => this.opts.log.warn({ err, instance: w.instance }, 'could not release a stopped runner instance'));
      }
      const running = [...this.watches].filter(([, w]) => w.api === key && byId.get(w.instance)?.State?.Name === 'running');
      if (running.length) {
        const statuses = await api.statuses(running.map(([, w]) => w.instance));
        for (const s of statuses) {
          if (s.InstanceStatus?.Status !== 'impaired' && s.SystemStatus?.Status !== 'impaired') continue;
          const entry = running.find(([, w]) => w.instance === s.InstanceId);
          if (!entry) continue;
          this.watches.delete(entry[0]);
          this.opts.log.warn({ runnerId: entry[0], instance: s.InstanceId }, 'runner instance failed its status checks; terminating it');
          this.emitExit(entry[0], `EC2 instance ${s.InstanceId} failed its status checks`);
          await this.terminateInstance(api, s.InstanceId!);
        }
      }
      const policies = new Map([...this.pools.keys()].map((p) => [p, this.policy(p)!] as const));
      const candidates = all.filter((i) => !this.releasing.has(i.InstanceId!) && !this.claimed.has(i.InstanceId!)).map((i) => this.poolInstance(i));
      for (const t of refreshPlan(candidates, policies, this.clock.now())) {
        this.opts.log.info({ instance: t.id, reason: t.reason }, 'refresh terminates a stopped instance');
        await this.terminateInstance(api, t.id);
      }
    }
  }

  private emitExit(runnerId: string, detail: string) {
    for (const l of this.listeners) l(runnerId, detail);
  }

  async close(): Promise<void> {
    // Instances outlive the control plane: a restart adopts them. Only stop polling.
    this.closed = true;
    clearTimeout(this.timer);
    await this.polling;
    await Promise.allSettled([...this.releases.values()]);
  }
}
