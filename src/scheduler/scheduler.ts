import { randomUUID } from 'node:crypto';
import type { AppContext } from '../app/context.js';
import type { LaunchSpec, Provider } from '../providers/provider.js';
import { decide, type Action, type PoolView } from './decide.js';
import { listPools, setWaitingReason } from '../store/queries/pools.js';
import { providerHint } from '../app/pool-checks.js';
import { artifactInfo } from '../store/artifacts.js';
import { insertStartingRunner, setProviderRef, findRunner } from '../store/queries/runners.js';
import { createToken } from '../store/queries/tokens.js';
import { liveRunnersOfProvider, type SchedulingRunner } from '../store/queries/scheduling.js';
import { RunnerCache } from './runner-cache.js';
import { drainIdleRunner, drainRunner, terminateRunner } from '../app/runners.js';
import { recordEvents } from '../store/queries/events.js';
import { sleep } from '../lib/clock.js';
import { appendQueuedLogs, failQueuedJobs, queuedJobIds } from '../queue/waiting.js';
import { baseAllowed } from '../app/images.js';
import { StoreUnavailableError } from '../store/store-errors.js';
import { DedicatedConnection } from '../store/dedicated-connection.js';

/** How often build progress is written to the waiting jobs' logs. */
const PROGRESS_FLUSH_MS = 500;

const FOLLOW_UP_GAP_MS = 50;
/** At most one pass per this long for changes of load alone (see wake). */
const LOAD_PASS_GAP_MS = 250;
/** A runner that exits this soon after registering without taking a job counts as a failed start. */
const EARLY_EXIT_MS = 60_000;

/** How long a runner asked to stop may take to finish its jobs before it is killed. */
const DEFAULT_STOP_GRACE_MS = 30_000;

/**
 * Applies the scaling plan: starts runners through the pool's provider, drains and terminates
 * them, and keeps the store in step with what providers report. Passes are serialised; a wake
 * during a pass runs one more pass after it, so bursts coalesce instead of racing.
 */
export class Scheduler {
  private failures = new Map<string, { count: number; lastAt: number }>();
  /** runners being started or stopped right now: reconcile leaves them alone */
  private inFlight = new Set<string>();
  private stopping = new Map<string, Promise<void>>();
  /** runner exits reported by providers and not yet recorded */
  private readonly exiting = new Set<Promise<void>>();
  private passing: Promise<void> | undefined;
  private again = false;
  private paced: NodeJS.Timeout | undefined;
  private lastPassAt = -Infinity;
  private closed = false;
  private warned = new Set<string>();
  private serial: Promise<unknown> = Promise.resolve();
  /** runner images ready for dynamic bases, by pool, runner image and base */
  private images = new Map<string, string>();
  /** runner images being prepared (built or found); their end wakes the scheduler */
  private preparing = new Map<string, Promise<void>>();
  /** the live runners, read incrementally pass after pass */
  private runnerCache = new RunnerCache();
  /** the gather's own connection (the leader's only: passes run there), see DedicatedConnection */
  private gatherConnection: DedicatedConnection;

  constructor(
    private ctx: AppContext,
    private providers: Map<string, Provider>,
    private opts: { serverUrl: () => string; instanceId: string; stopGraceMs?: number; isLeader: () => boolean },
  ) {
    this.gatherConnection = new DedicatedConnection(ctx.db);
    for (const p of providers.values())
      p.onExit((id, detail) => {
        const done = this.runnerExited(id, detail).finally(() => this.exiting.delete(done));
        this.exiting.add(done);
      });
  }

  /**
   * Runs a pass soon; several wakes while one runs collapse into one more pass. `urgent` (the
   * default: jobs no runner took, runners coming and going) starts it at once, so a job waiting
   * for a cold start does not wait. A wake for a change of load (a claim, a result: busy/idle)
   * runs at most one pass per LOAD_PASS_GAP_MS: a stream of them must not spin the scheduler,
   * and the periodic tick covers what they might change. Pacing is in real time, as the gap is.
   */
  wake(urgent = true): void {
    if (this.closed || !this.opts.isLeader()) return;
    if (!urgent) {
      if (this.paced) return;
      const wait = this.passing ? LOAD_PASS_GAP_MS : this.lastPassAt + LOAD_PASS_GAP_MS - performance.now();
      if (wait > 0) {
        this.paced = setTimeout(() => {
          this.paced = undefined;
          this.wake();
        }, wait);
        this.paced.unref();
        return;
      }
    }
    if (this.passing) {
      this.again = true;
      return;
    }
    this.passing = (async () => {
      for (let first = true; first || (this.again && !this.closed); first = false) {
        // The first wake runs at once (a job waiting for a cold start); follow-ups during a busy
        // stretch are spaced out, so a stream of claims and results does not spin the scheduler.
        if (!first) await sleep(FOLLOW_UP_GAP_MS);
        this.again = false;
        this.lastPassAt = performance.now();
        try {
          await this.pass(this.ctx.clock.now());
        } catch (err) {
          if (err instanceof StoreUnavailableError) this.ctx.log.warn({ reason: err.message }, 'scheduler pass skipped: store unavailable');
          else this.ctx.log.error({ err }, 'scheduler pass failed');
        }
      }
      this.passing = undefined;
    })();
  }

  /** Waits for the pass in progress (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.passing) await this.passing;
  }

  async gather(now: number): Promise<PoolView[]> {
    const { runners, pools, queued: queuedRows } = await this.runnerCache.read(this.gatherConnection);
    const queued = new Map<string, number>();
    const byImage = new Map<string, Record<string, number>>();
    for (const r of queuedRows) {
      queued.set(r.pool, (queued.get(r.pool) ?? 0) + r.n);
      if (r.image !== null) byImage.set(r.pool, { ...byImage.get(r.pool), [r.image]: r.n });
    }
    const byPool = new Map<string, SchedulingRunner[]>();
    for (const r of runners) {
      const list = byPool.get(r.pool);
      if (list) list.push(r);
      else byPool.set(r.pool, [r]);
    }
    return pools.map((p) => {
      const mine = byPool.get(p.name) ?? [];
      return {
        config: p.config,
        configHash: p.configHash,
        queued: queued.get(p.name) ?? 0,
        queuedByImage: byImage.get(p.name) ?? {},
        // a SchedulingRunner is a RunnerView with more fields: no copy of ten thousand rows per pass
        runners: mine,
        startFailures: this.failureState(p.name, mine, now),
      };
    });
  }

  /** Passes and reconciles never overlap: two at once could both start runners for one gap. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.serial.then(fn, fn);
    this.serial = run.catch(() => {});
    return run;
  }

  /** One decide-then-apply pass; returns the plan it applied. */
  pass(now: number): Promise<Action[]> {
    return this.exclusive(() => this.passNow(now));
  }

  private async passNow(now: number): Promise<Action[]> {
    const views = await this.gather(now);
    const plan = decide(views, now);
    const byPool = new Map(views.map((v) => [v.config.name, v]));
    for (const a of plan) {
      const v = byPool.get(a.pool)!;
      this.ctx.log.info(
        { action: a.kind, pool: a.pool, reason: a.reason, ...(a.kind === 'start' ? { count: a.count } : { runnerId: a.runnerId }), queued: v.queued, runners: v.runners.length },
        'scheduler decision',
      );
      try {
        if (a.kind === 'start') await this.start(v, a.count, a.reason, a.image);
        else if (a.kind === 'drain') await this.drain(a.runnerId, a.reason);
        else void this.terminate(a.runnerId, a.reason);
      } catch (err) {
        this.ctx.log.error({ err, action: a }, 'scheduler action failed');
      }
    }
    return plan;
  }

  private failureState(pool: string, runners: SchedulingRunner[], now: number) {
    const f = this.failures.get(pool) ?? { count: 0, lastAt: 0 };
    if (f.count === 0) return f;
    // A runner started after the last failure that took a job, or stayed up, proves the pool healthy.
    const healthy = (r: SchedulingRunner) => r.registeredAt !== null && r.createdAt > f.lastAt && (r.jobsStarted > 0 || now - r.registeredAt >= EARLY_EXIT_MS);
    if (runners.some(healthy)) {
      this.failures.delete(pool);
      return { count: 0, lastAt: 0 };
    }
    return f;
  }

  private recordFailure(pool: string, now: number) {
    const f = this.failures.get(pool) ?? { count: 0, lastAt: 0 };
    this.failures.set(pool, { count: f.count + 1, lastAt: now });
  }

  private async start(v: PoolView, count: number, reason: string, image?: string) {
    const provider = this.providers.get(v.config.provider);
    if (!provider) {
      if (!this.warned.has(v.config.name)) {
        this.warned.add(v.config.name);
        this.ctx.log.warn({ pool: v.config.name, provider: v.config.provider }, 'pool provider not available');
      }
      await this.setWaiting(v.config.name, `no ${v.config.provider} provider is available on this server (${providerHint(v.config.provider)})`);
      return;
    }
    if (v.config.distribution && !(await artifactInfo(this.ctx.db, v.config.distribution))) return this.failForDistribution(v);
    const classSize = v.config.class ? this.ctx.classSizes[v.config.class] : undefined;
    let dynamic: { image: string; base: string } | undefined;
    if (image !== undefined) {
      dynamic = this.dynamicImage(v, provider, image);
      if (!dynamic) return; // being prepared: its end wakes the scheduler
    }
    // Each runner gets its row and launch token, then its create; a provider that batches
    // launches (ECS's RunTask with count) gets them in createMany calls of its batchSize, each
    // sent as soon as that many rows are in, so the first launch does not wait for the last row.
    const batch = provider.createMany ? Math.max(1, provider.batchSize ?? count) : 1;
    let ready: { id: string; spec: LaunchSpec }[] = [];
    const launched: Promise<void>[] = [];
    const tally: StartTally = { started: 0 };
    const flush = () => {
      const group = ready;
      ready = [];
      if (!group.length) return;
      const started = performance.now();
      const created = provider.createMany ? provider.createMany(group.map((l) => l.spec)) : group.map((l) => provider.create(l.spec));
      group.forEach(({ id }, i) => launched.push(this.launched(v, provider, id, created[i]!, started, image, tally)));
    };
    await Promise.all(
      Array.from({ length: count }, async () => {
        const now = this.ctx.clock.now();
        const id = randomUUID();
        this.inFlight.add(id);
        try {
          const { secret } = await this.ctx.db.transaction(async (tx) => {
            await insertStartingRunner(tx, now, {
              id,
              pool: v.config.name,
              name: `${v.config.name}-${id.slice(0, 8)}`,
              provider: provider.name,
              configHash: v.configHash,
              slots: v.config.ephemeral ? 1 : v.config.maxJobsPerRunner,
              ephemeral: v.config.ephemeral,
              reason,
              image: image ?? null,
            });
            return createToken(tx, now, { kind: 'registration', pool: v.config.name, runnerId: id, description: 'launch token', expiresAt: now + v.config.startTimeout + 60_000 });
          });
          ready.push({
            id,
            spec: {
              runnerId: id,
              name: `${v.config.name}-${id.slice(0, 8)}`,
              pool: v.config,
              classSize,
              ...(dynamic ? { dynamic } : {}),
              serverUrl: this.opts.serverUrl(),
              registrationToken: secret,
              instanceId: this.opts.instanceId,
            },
          });
          if (ready.length >= batch) flush();
        } catch (err) {
          await this.startFailed(v, provider, id, err, image, tally);
        }
      }),
    );
    flush();
    await Promise.all(launched);
    // what may recover (engine down, image missing) is shown on the waiting jobs until a start works
    if (tally.started) await this.setWaiting(v.config.name, null);
    else if (tally.failure) await this.setWaiting(v.config.name, `runners cannot be started: ${tally.failure}; runyard keeps trying, with backoff`);
  }

  /** A create's outcome: the provider's ref into the store, or a failed start. */
  private async launched(v: PoolView, provider: Provider, id: string, created: Promise<{ ref: string }>, started: number, image: string | undefined, tally: StartTally) {
    try {
      const { ref } = await created;
      this.ctx.metrics.runnerCreate.observe({ provider: provider.name }, (performance.now() - started) / 1000);
      await setProviderRef(this.ctx.db, id, ref);
      this.inFlight.delete(id);
      tally.started++;
    } catch (err) {
      await this.startFailed(v, provider, id, err, image, tally);
    }
  }

  private async startFailed(v: PoolView, provider: Provider, id: string, err: unknown, image: string | undefined, tally: StartTally) {
    tally.failure = (err as Error).message;
    try {
      if (image !== undefined) this.images.delete(imageKey(v, image)); // the image may be gone: look again next time
      this.ctx.metrics.providerErrors.inc({ provider: provider.name, op: 'create' });
      this.recordFailure(v.config.name, this.ctx.clock.now());
      await this.markTerminated(id, `provider failed to start it: ${(err as Error).message}`).catch(() => {});
      this.ctx.log.error({ err, pool: v.config.name, runnerId: id }, 'runner start failed');
    } finally {
      this.inFlight.delete(id);
    }
  }

  /** Records why a pool's jobs wait (null: they no longer do); an event when it changes, so the dashboard hears of it. */
  private async setWaiting(pool: string, reason: string | null): Promise<void> {
    try {
      if (!(await setWaitingReason(this.ctx.db, pool, reason))) return;
      await recordEvents(this.ctx.db, this.ctx.clock.now(), [{ kind: 'scheduler', subject: pool, reason: reason ? `jobs wait: ${reason}` : 'runners start again', actor: 'scheduler' }]);
    } catch (err) {
      this.ctx.log.warn({ err, pool }, 'could not record why jobs wait');
    }
  }

  /** The pool's distribution is gone from the store: its waiting jobs fail with the reason, no runner starts. */
  private async failForDistribution(v: PoolView): Promise<void> {
    const pool = v.config.name;
    const reason = `distribution ${v.config.distribution} of pool ${pool} is no longer in the artifact store; push it again (\`runyard artifacts push\`) or change the pool, then retry the job`;
    const now = this.ctx.clock.now();
    const failed: number[] = [];
    for (const image of [null, ...Object.keys(v.queuedByImage ?? {})] as (string | null)[]) failed.push(...(await failQueuedJobs(this.ctx.db, now, pool, image, reason, 'scheduler')));
    for (const id of failed) this.ctx.bus.emit('job-changed', id);
    if (!failed.length) return;
    this.ctx.metrics.jobOutcomes.inc({ pool, state: 'failed' }, failed.length);
    await recordEvents(this.ctx.db, now, [{ kind: 'scheduler', subject: pool, reason: `${reason}; ${failed.length} waiting job(s) failed`, actor: 'scheduler' }]);
    this.ctx.log.error({ pool, distribution: v.config.distribution, failed: failed.length }, 'distribution missing; waiting jobs failed');
  }

  /**
   * The runner image for a dynamic base, when it is ready. Otherwise it is prepared in the
   * background (a build can take minutes; the pass does not wait): its progress goes to the
   * waiting jobs' logs, and a failure fails them with the engine's message instead of retrying.
   */
  private dynamicImage(v: PoolView, provider: Provider, base: string): { image: string; base: string } | undefined {
    const key = imageKey(v, base);
    const ready = this.images.get(key);
    if (ready) return { image: ready, base };
    if (!this.preparing.has(key)) {
      const run = this.prepareImage(v, provider, base).finally(() => {
        this.preparing.delete(key);
        this.wake();
      });
      this.preparing.set(key, run);
    }
    return undefined;
  }

  private async prepareImage(v: PoolView, provider: Provider, base: string): Promise<void> {
    const pool = v.config.name;
    const t0 = performance.now();
    const jobIds = await queuedJobIds(this.ctx.db, pool, base);
    let pending: string[] = [];
    let timer: NodeJS.Timeout | undefined;
    let writing = Promise.resolve();
    const flush = () => {
      clearTimeout(timer);
      timer = undefined;
      const lines = pending;
      pending = [];
      writing = writing
        .then(async () => {
          for (const id of await appendQueuedLogs(this.ctx.db, this.ctx.clock.now(), jobIds, lines)) this.ctx.bus.emit('log-appended', id);
        })
        .catch((err) => this.ctx.log.warn({ err, pool, base }, 'could not write image build progress'));
      return writing;
    };
    const progress = (line: string) => {
      pending.push(line);
      timer ??= setTimeout(flush, PROGRESS_FLUSH_MS);
    };
    try {
      if (!provider.prepareImage) throw new Error(`the ${provider.name} provider cannot run a job's own image`);
      // the pool may have changed since the job was accepted
      if (!baseAllowed(v.config.dynamicImages, base)) throw new Error(`pool ${pool} no longer allows dynamic image ${base}`);
      const { image, built } = await provider.prepareImage({ base, agentImage: v.config.image! }, progress);
      const secs = (performance.now() - t0) / 1000;
      if (built) {
        this.ctx.metrics.imageBuild.observe({ provider: provider.name, outcome: 'built' }, secs);
        progress(`runner image for ${base} built in ${secs.toFixed(1)}s; starting a runner`);
        await recordEvents(this.ctx.db, this.ctx.clock.now(), [{ kind: 'scheduler', subject: pool, reason: `built runner image ${image} for base ${base} in ${secs.toFixed(1)}s`, actor: 'scheduler' }]);
        this.ctx.log.info({ pool, base, image, seconds: secs }, 'runner image built');
      }
      this.images.set(imageKey(v, base), image);
      await flush();
    } catch (err) {
      if (this.closed) return; // shutting down: the next start prepares it again
      const message = (err as Error).message;
      if ((err as { retryable?: boolean }).retryable) {
        // not the job's fault (the engine is down): it waits, and the pool backs off like a failed start
        this.recordFailure(pool, this.ctx.clock.now());
        this.ctx.metrics.providerErrors.inc({ provider: provider.name, op: 'image' });
        progress(`${message}; the job waits and runyard tries again`);
        await flush();
        this.ctx.log.warn({ err, pool, base }, 'runner image could not be prepared; will retry');
        return;
      }
      this.ctx.metrics.imageBuild.observe({ provider: provider.name, outcome: 'failed' }, (performance.now() - t0) / 1000);
      this.ctx.metrics.providerErrors.inc({ provider: provider.name, op: 'image' });
      progress(`runner image for ${base} could not be prepared: ${message}`);
      await flush();
      const reason = `runner image for base ${base} could not be prepared: ${message}`;
      const failed = await failQueuedJobs(this.ctx.db, this.ctx.clock.now(), pool, base, reason, 'scheduler');
      for (const id of failed) this.ctx.bus.emit('job-changed', id);
      if (failed.length) this.ctx.metrics.jobOutcomes.inc({ pool, state: 'failed' }, failed.length);
      await recordEvents(this.ctx.db, this.ctx.clock.now(), [{ kind: 'scheduler', subject: pool, reason: `${reason}; ${failed.length} waiting job(s) failed`, actor: 'scheduler' }]);
      this.ctx.log.error({ err, pool, base, failed: failed.length }, 'runner image could not be prepared');
    }
  }

  private async drain(runnerId: string, reason: string) {
    const r = await drainRunner(this.ctx, runnerId, reason);
    if (!r.moved) this.ctx.log.info({ runnerId, reason: r.refusal }, 'scheduler drain not applied');
  }

  /**
   * Stops a runner through its provider in the background; its jobs take the recovery path.
   * The scheduler only terminates runners without jobs: if one claimed a job since the decision,
   * the move to draining fails under the runner's row lock (which claims also take) and the
   * termination is abandoned.
   */
  terminate(runnerId: string, reason: string): Promise<void> {
    const existing = this.stopping.get(runnerId);
    if (existing) return existing;
    const run = this.terminateNow(runnerId, reason)
      .catch((err) => this.ctx.log.error({ err, runnerId }, 'runner termination failed; the next pass retries'))
      .finally(() => {
        this.stopping.delete(runnerId);
        this.wake();
      });
    this.stopping.set(runnerId, run);
    return run;
  }

  private async terminateNow(runnerId: string, reason: string): Promise<void> {
    const now = this.ctx.clock.now();
    const runner = await findRunner(this.ctx.db, runnerId);
    if (!runner || runner.state === 'terminated') return;
    if (runner.state === 'starting' || runner.state === 'offline') {
      if (runner.state === 'starting') this.recordFailure(runner.pool, now);
      await this.markTerminated(runnerId, reason);
    } else if (runner.state !== 'draining') {
      if (!(await drainIdleRunner(this.ctx, runnerId, reason))) return; // it took a job in the meantime: keep it
    }
    const provider = runner.provider ? this.providers.get(runner.provider) : undefined;
    if (provider) {
      try {
        await provider.terminate(runnerId, { graceMs: this.opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS });
      } catch (err) {
        this.ctx.metrics.providerErrors.inc({ provider: provider.name, op: 'terminate' });
        throw err;
      }
    }
    await this.markTerminated(runnerId, reason);
  }

  /** Terminated in the store; whatever it still held goes back to the queue (or fails). */
  private async markTerminated(runnerId: string, reason: string) {
    await terminateRunner(this.ctx, this.ctx.clock.now(), runnerId, reason);
  }

  /** A runner's process or container ended on its own (crash, kill -9, drained, ephemeral). */
  private async runnerExited(runnerId: string, detail: string) {
    if (this.closed) return;
    try {
      const r = await findRunner(this.ctx.db, runnerId);
      // Dying before registering, or soon after without taking a job (setup failed, bad image),
      // is a failed start: it counts toward the pool's backoff so it cannot loop.
      const now = this.ctx.clock.now();
      const early = r && !this.stopping.has(runnerId) && r.jobsStarted === 0 && (!r.registeredAt || now - r.registeredAt.getTime() < EARLY_EXIT_MS);
      if (r && (r.state === 'starting' || early)) this.recordFailure(r.pool, now);
      if (r && r.state !== 'terminated') await this.markTerminated(runnerId, `runner process ${detail}${r.state === 'starting' ? ' before registering' : ''}`);
      // a failed start (a pod stuck on its image, say) is explained to the jobs waiting for it
      if (r?.state === 'starting')
        for (const id of await appendQueuedLogs(this.ctx.db, now, await queuedJobIds(this.ctx.db, r.pool, r.image), [`runner ${r.name} failed to start: ${detail}; runyard tries again`])) this.ctx.bus.emit('log-appended', id);
    } catch (err) {
      this.ctx.log.error({ err, runnerId }, 'could not record runner exit');
    }
    this.wake();
  }

  /**
   * Makes the store and the providers agree: runners the store thinks live but no provider has
   * are terminated (their jobs recovered); runners a provider has but the store has ended are
   * stopped (orphans after a crash). Runners still alive and known are adopted as they are.
   */
  reconcile(): Promise<{ gone: string[]; orphans: string[] }> {
    return this.exclusive(() => this.reconcileNow());
  }

  private async reconcileNow(): Promise<{ gone: string[]; orphans: string[] }> {
    const gone: string[] = [];
    const orphans: string[] = [];
    const pools = (await listPools(this.ctx.db)).map((p) => p.config);
    for (const provider of this.providers.values()) {
      provider.learnPools?.(pools);
      let owned;
      try {
        owned = await provider.list();
      } catch (err) {
        this.ctx.metrics.providerErrors.inc({ provider: provider.name, op: 'list' });
        this.ctx.log.warn({ err, provider: provider.name }, 'provider list failed; skipping reconcile');
        continue;
      }
      // Exits the provider reported while listing are recorded first, with the provider's own
      // reason (a spot interruption, a task that failed to start), not as "not found" below.
      await Promise.allSettled([...this.exiting]);
      const alive = new Map(owned.filter((o) => o.alive).map((o) => [o.runnerId, o]));
      // Only runners this provider instance could see: another server's are not ours to judge.
      const known = await liveRunnersOfProvider(this.ctx.db, provider.name, provider.owner);
      const knownIds = new Set(known.map((k) => k.id));
      for (const k of known) {
        if (alive.has(k.id) || this.inFlight.has(k.id) || this.stopping.has(k.id)) continue;
        gone.push(k.id);
        await this.markTerminated(k.id, 'runner not found on its provider');
      }
      for (const o of alive.values()) {
        if (knownIds.has(o.runnerId) || this.inFlight.has(o.runnerId) || this.stopping.has(o.runnerId)) continue;
        orphans.push(o.runnerId);
        this.ctx.log.warn({ runnerId: o.runnerId, ref: o.ref }, 'stopping orphan runner');
        await recordEvents(this.ctx.db, this.ctx.clock.now(), [{ kind: 'runner', subject: o.runnerId, reason: 'orphan stopped by reconcile', actor: 'scheduler' }]);
        void provider.terminate(o.runnerId, { graceMs: 5_000 }).catch(() => {});
      }
    }
    if (gone.length || orphans.length) this.ctx.log.info({ gone, orphans }, 'reconciled runners with providers');
    return { gone, orphans };
  }

  /**
   * On a graceful shutdown, runners this machine runs (providers with `runsOnServerHost`: the
   * process provider) stop with it: their jobs go back to the queue for the next start. Runners of a crashed control plane are not
   * stopped (nothing runs this), and a restart adopts them.
   */
  async stopLocalRunners(): Promise<void> {
    const local = [...this.providers.values()].filter((p) => p.runsOnServerHost);
    for (const provider of local) {
      const owned = await provider.list().catch(() => []);
      for (const r of owned) await this.markTerminated(r.runnerId, 'control plane shut down').catch(() => {});
      // A short grace: idle agents exit at SIGTERM within moments; only one that really does not
      // stop is killed (and warned about).
      await Promise.all(owned.map((r) => provider.terminate(r.runnerId, { graceMs: SHUTDOWN_GRACE_MS }).catch(() => {})));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
    await Promise.allSettled([...this.stopping.values()]);
    this.gatherConnection.close();
  }
}

/** How long runners get to exit at SIGTERM when the control plane shuts down. */
const SHUTDOWN_GRACE_MS = 3000;

/** How one start action went: runners started, and the last failure's message. */
interface StartTally {
  started: number;
  failure?: string;
}

/** Ready runner images are known per pool, per runner image (a pool change builds anew) and per base. */
const imageKey = (v: PoolView, base: string) => `${v.config.name}\n${v.config.image ?? ''}\n${base}`;
