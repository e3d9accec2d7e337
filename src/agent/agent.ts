/*
 * The runner agent. It reads top to bottom:
 *
 *   lock state dir ─▶ identity ─▶ kill a predecessor's jobs ─▶ register ─▶ control channel + heartbeats
 *     ─▶ setup ─▶ distribution ─▶ claim loop (long poll; one request in flight) ─▶ run jobs ─▶ stop
 *     ─▶ deregister ─▶ exit
 *
 * Claiming happens only while registered, prepared, connected, enabled, holding the lease, not
 * stopping and with a free slot. The lease (lease.ts) is renewed by answered heartbeats; when it
 * runs out the agent stops its jobs without reporting them (the server requeues them later), and
 * a lease guard process (lease-guard.ts) does the same if the agent itself is frozen. How it stops:
 *
 *   drain (operator, SIGTERM, ephemeral) ─ claim nothing more, finish jobs, deregister, exit 0
 *       └─ SIGTERM again / grace period over ─ kill jobs (reported "agent shutting down")
 *   pause (close({ keepIdentity }): Ctrl-C of a hand-started agent) ─ like drain, but the runner
 *       goes offline instead of deregistering and keeps its UUID and key for the next start
 *   delete ─ kill jobs now, report nothing, remove state and job dirs, exit 0
 *   gone (410) ─ the server terminated us: kill jobs, report nothing, exit 0
 *   unauthorized (401) ─ credential revoked (another agent took this id?): kill jobs, exit 1
 *   fatal (setup failed, registration refused) ─ exit 1 with the reason
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { monotonicClock, systemClock, sleep as realSleep, type Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { VERSION } from '../version.js';
import { Backoff, type Sleep } from './backoff.js';
import { ControlChannel } from './control-channel.js';
import { Distribution } from './distribution.js';
import { NetworkError, RegistrationRefusedError, RunnerGoneError, SetupFailedError, StateDirLockedError, classify, statusOf } from './errors.js';
import { JobExecution, type ExecutionSummary, type KillReason } from './executor.js';
import { Lease } from './lease.js';
import { LeaseGuard } from './lease-guard.js';
import { HealthServer } from './health-server.js';
import { HeartbeatLoop } from './heartbeat.js';
import { forgetIdentity, loadOrCreateIdentity, type Identity } from './identity.js';
import { registerWithRetry } from './registration.js';
import type { ClaimedJob, ControlEventName, HeartbeatResponse, RunnerConfig } from '../protocol/runner.js';
import { RunnerClient } from './runner-client.js';
import { runSetup } from './setup.js';
import { ServerList } from './server-list.js';
import { StateDir } from './state-dir.js';
import { Wakeup } from './wakeup.js';
import { Workspace } from './workspace.js';
import { openSealed } from '../lib/sealed.js';
import { baseEnv } from '../lib/base-env.js';

export interface AgentOptions {
  server: string;
  registrationToken: string;
  stateDir: string;
  workDir: string;
  /** Default: <hostname>-<first 8 characters of the id>. */
  name?: string;
  labels?: string[];
  /** A fixed runner id (the process provider passes one); default: generated once and kept. */
  id?: string;
  /** Serve /livez and /readyz on this port (0: any free port); undefined: no health server. */
  healthPort?: number;
  /** Default 127.0.0.1: the probes tell anyone who asks what the runner is doing. */
  healthHost?: string;
  /** SIGTERM → SIGKILL grace for jobs, and how long a SIGTERM drain waits before killing jobs. */
  gracePeriodMs?: number;
  log: Logger;
  clock?: Clock;
  /** The lease's clock: monotonic, shared with the lease guard process. */
  monotonic?: Clock;
  sleep?: Sleep;
  /** For artifact downloads (the protocol's JSON calls and control channel use node:http). */
  fetch?: typeof fetch;
  /** The environment jobs start from, reduced to an allowlist (src/lib/base-env.ts). Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** More names (or prefixes ending in `*`) of `env` that jobs and setup get. */
  passEnv?: string[];
}

export type StopKind = 'drain' | 'delete' | 'gone' | 'unauthorized';

export interface AgentExit {
  code: number;
  reason: string;
}

export interface AgentEvents {
  registered: [{ runnerId: string; name: string; config: RunnerConfig }];
  ready: [];
  connected: [];
  disconnected: [reason: string];
  'health-listening': [port: number];
  'job-started': [{ jobId: number; attempt: number }];
  'job-finished': [ExecutionSummary];
  stopping: [{ kind: StopKind; reason: string }];
  stopped: [AgentExit];
}

/** Unseen claims listed in one heartbeat at most. */
const MAX_UNSEEN_CLAIMS = 64;

/** The lease guard starts this long after the first claim, unless a job starts it earlier. */
const GUARD_START_DELAY_MS = 1000;

/** How long one claim long-poll may wait on the server. */
const CLAIM_WAIT_MS = 20_000;
const SHUTDOWN = 'agent shutting down';
const PRIORITY: Record<StopKind, number> = { drain: 1, unauthorized: 2, gone: 3, delete: 4 };

export class Agent extends EventEmitter<AgentEvents> {
  private readonly clock: Clock;
  private readonly mono: Clock;
  private readonly sleep: Sleep;
  private log: Logger;
  private readonly client: RunnerClient;
  private readonly stateDir: StateDir;
  private readonly workspace: Workspace;
  private readonly graceMs: number;
  private readonly health: HealthServer | undefined;
  /** What jobs and setup start from: the allowlisted part of the agent's environment. */
  private readonly jobBaseEnv: Record<string, string>;

  private identity: Identity | undefined;
  private name = '';
  private config: RunnerConfig | undefined;
  private distribution: Distribution | undefined;
  private control: ControlChannel | undefined;
  private heartbeat: HeartbeatLoop | undefined;
  private lease: Lease | undefined;
  private guard: LeaseGuard | undefined;
  private servers: ServerList | undefined;

  private registered = false;
  private prepared = false;
  private enabled = true;
  private stop: { kind: StopKind; reason: string } | undefined;
  /** A drain that ends offline with the identity kept, instead of deregistered. */
  private keepIdentity = false;
  /** Aborted when the agent starts stopping: registration, setup and downloads give up. */
  private readonly halt = new AbortController();
  private forced = false;
  /** Aborted when run() is over, so no timer of ours outlives the agent. */
  private readonly over = new AbortController();
  private readonly jobs = new Map<string, JobExecution>();
  private readonly running = new Set<Promise<unknown>>();
  private jobsTaken = 0;
  private claimAbort: AbortController | undefined;
  /**
   * Claim requests are numbered (from a random start: a restarted agent must not reuse its
   * predecessor's numbers); the ones never seen answered go with the next heartbeat.
   */
  private claimSeq = Math.floor(Math.random() * 2 ** 30);
  private readonly abandonedClaims = new Set<number>();
  private readonly changed = new Wakeup();
  private main: Promise<AgentExit> | undefined;
  private readyResolvers: { ok: () => void; fail: (err: Error) => void } | undefined;

  constructor(private readonly opts: AgentOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.mono = opts.monotonic ?? monotonicClock;
    this.sleep = opts.sleep ?? realSleep;
    this.log = opts.log;
    this.client = new RunnerClient(opts.server.replace(/\/+$/, ''), opts.fetch);
    this.stateDir = new StateDir(opts.stateDir);
    this.workspace = new Workspace(opts.workDir);
    this.graceMs = opts.gracePeriodMs ?? 10_000;
    this.jobBaseEnv = baseEnv(opts.env ?? process.env, opts.passEnv);
    if (opts.healthPort !== undefined) this.health = new HealthServer(() => this.readiness());
  }

  get runnerId(): string | undefined {
    return this.identity?.id;
  }

  /** Resolves once registered and ready to claim; rejects if the agent stops before that. */
  start(): Promise<void> {
    const ready = new Promise<void>((ok, fail) => (this.readyResolvers = { ok, fail }));
    this.main ??= this.run();
    return ready;
  }

  /** Resolves with the exit code and reason when the agent has stopped. */
  get done(): Promise<AgentExit> {
    this.main ??= this.run();
    return this.main;
  }

  /**
   * Graceful stop (first SIGTERM): claim nothing more, let running jobs finish, deregister.
   * Jobs still running after the grace period are killed. A second call kills them at once.
   * `keepIdentity`: go offline rather than deregister, so the next start is the same runner.
   */
  async close(opts: { keepIdentity?: boolean } = {}): Promise<AgentExit> {
    if (this.stop) this.forceStop();
    else {
      this.keepIdentity = !!opts.keepIdentity;
      this.requestStop('drain', SHUTDOWN);
      void this.sleep(this.graceMs, this.over.signal).then(() => {
        if (!this.over.signal.aborted) this.forceStop();
      });
    }
    return this.done;
  }

  /** Kills running jobs (reported as failed: "agent shutting down") so a drain can complete. */
  forceStop(): void {
    if (this.forced) return;
    this.forced = true;
    if (this.jobs.size) this.log.warn({ jobs: this.jobs.size }, 'killing running jobs: agent shutting down');
    for (const j of this.jobs.values()) j.kill('shutdown');
  }

  private async run(): Promise<AgentExit> {
    let exit: AgentExit;
    try {
      await this.boot();
      void this.claimLoop();
      // The guard (a second Node process) boots while the agent is idle, not beside the first job's
      // start on a busy machine: a job spawned before then starts it (LeaseGuard.add).
      void this.sleep(GUARD_START_DELAY_MS, this.over.signal).then(() => {
        if (!this.over.signal.aborted) this.guard?.start();
      });
      await this.until(() => !!this.stop && this.jobs.size === 0);
      await Promise.allSettled([...this.running]);
      exit = await this.finish();
    } catch (err) {
      exit = this.halt.signal.aborted && !isFatal(err) ? await this.finish() : await this.fail(err as Error);
    }
    this.over.abort();
    this.lease?.close();
    this.guard?.close();
    this.client.close();
    await this.health?.close();
    this.workspace.unlock();
    this.stateDir.unlock();
    this.log.info({ code: exit.code, reason: exit.reason }, 'agent stopped');
    this.readyResolvers?.fail(new Error(exit.reason));
    this.emit('stopped', exit);
    return exit;
  }

  private async boot(): Promise<void> {
    const { opts } = this;
    const stalePid = this.stateDir.lock();
    const { identity, created } = loadOrCreateIdentity(this.stateDir.identityFile, opts.id);
    this.identity = identity;
    this.name = opts.name ?? `${hostname()}-${identity.id.slice(0, 8)}`;
    this.log = this.log.child({ runnerId: identity.id });
    if (stalePid) this.log.warn({ pid: stalePid, stateDir: this.stateDir.path }, 'state dir lock of an agent that is gone (killed?) taken over');
    this.log.info({ server: this.client.server, name: this.name, stateDir: this.stateDir.path, workDir: this.workspace.root, newIdentity: created, version: VERSION }, 'agent starting');
    if (this.health) {
      const host = opts.healthHost ?? '127.0.0.1';
      const port = await this.health.listen(opts.healthPort!, host);
      this.log.info({ port, host }, 'health server listening');
      this.emit('health-listening', port);
    }

    // Before registering: registration requeues what this runner id held, so jobs a killed
    // predecessor left running on this work dir must be gone before anyone else can take them.
    const { killedGroups } = this.workspace.prepare();
    if (killedGroups) this.log.warn({ killedGroups }, 'killed jobs left running by a previous agent on this work dir');

    const reg = await registerWithRetry(
      opts.registrationToken,
      { id: identity.id, name: this.name, version: VERSION, publicKey: identity.publicKey, labels: opts.labels ?? [] },
      { client: this.client, backoff: new Backoff({ baseMs: 500, maxMs: 15_000 }), sleep: this.sleep, log: this.log, signal: this.halt.signal, now: () => this.mono.now() },
    );
    this.client.credential = reg.sealedCredential ? openSealed(identity.privateKey, reg.sealedCredential).credential : reg.credential;
    this.config = reg.config;
    this.registered = true;
    this.log = this.log.child({ pool: reg.config.pool });
    this.log.info({ slots: reg.config.maxJobsPerRunner, ephemeral: reg.config.ephemeral, setup: reg.config.setup.length, distribution: reg.config.distribution?.name ?? null }, 'registered');
    this.emit('registered', { runnerId: identity.id, name: this.name, config: reg.config });
    this.holdLease(reg.config, reg.sentAt);
    // Moving to another server well inside the lease keeps the jobs running through a failover.
    const failoverMs = Math.max(500, Math.min(10_000, Math.floor((reg.config.leaseMs ?? 2 * reg.config.heartbeatIntervalMs) / 3)));
    this.servers = new ServerList(this.client.server, failoverMs, this.mono);
    this.learnServers(reg.config.servers);
    this.connect(reg.config);
    await runSetup(reg.config.setup, {
      runnerId: identity.id,
      cwd: this.workspace.setupDir,
      env: reg.config.env,
      baseEnv: this.jobBaseEnv,
      timeoutMs: reg.config.jobTimeoutMs,
      graceMs: this.graceMs,
      clock: this.clock,
      sleep: this.sleep,
      log: this.log,
      signal: this.halt.signal,
    });
    if (reg.config.distribution) {
      this.distribution = new Distribution(reg.config.distribution, {
        download: (digest, signal) => this.client.downloadArtifact(digest, signal),
        cacheDir: this.stateDir.distCacheDir,
        backoff: new Backoff({ baseMs: 500, maxMs: 15_000 }),
        sleep: this.sleep,
        log: this.log,
      });
      // Jobs retry the download themselves and fail with the reason if it stays broken.
      await this.distribution.ensure(this.halt.signal).catch((err) => this.log.error({ reason: (err as Error).message }, 'distribution unavailable; jobs will fail until it is fixed'));
    }
    if (this.halt.signal.aborted) return;
    this.prepared = true;
    this.log.info('ready for jobs');
    this.readyResolvers?.ok();
    this.readyResolvers = undefined;
    this.emit('ready');
    this.reconsider();
  }

  /** The lease the registration granted; servers without leases grant none (never expires). */
  private holdLease(config: RunnerConfig, grantedAt: number): void {
    if (!config.leaseMs) return void this.log.warn('the server grants no lease: jobs of a runner that loses contact may run twice');
    const lease = (this.lease = new Lease(config.leaseMs, this.mono, this.sleep, grantedAt));
    this.guard = new LeaseGuard({ killGraceMs: config.leaseKillGraceMs ?? 1000, log: this.log });
    this.guard.renew(lease.deadline);
    lease.on('expired', () => {
      this.log.warn({ leaseMs: lease.leaseMs, jobs: this.jobs.size }, 'lease expired: no heartbeat answered in time; stopping jobs, not claiming');
      for (const j of this.jobs.values()) j.kill('expired');
      this.reconsider();
    });
    lease.on('renewed', () => {
      this.log.info('lease renewed');
      this.reconsider();
    });
    void lease.run();
  }

  /** Opens the control channel and starts heartbeats; both outlive reconnects. */
  private connect(config: RunnerConfig): void {
    const id = this.identity!.id;
    this.control = new ControlChannel({
      open: (signal) => this.client.openControl(id, signal),
      pingIntervalMs: config.pingIntervalMs,
      clock: this.clock,
      sleep: this.sleep,
      backoff: new Backoff({ baseMs: 250, maxMs: 5000 }),
      log: this.log,
    });
    this.control.on('connected', () => {
      this.log.info('control channel connected');
      this.emit('connected');
      this.reconsider();
    });
    this.control.on('failed', () => this.reconsider());
    this.control.on('disconnected', (reason) => {
      this.log.warn({ reason }, 'control channel disconnected; not claiming until it is back');
      this.emit('disconnected', reason);
      this.reconsider();
    });
    this.control.on('event', (name, data) => this.onControl(name, data));
    this.control.on('gone', () => this.ended('gone'));
    this.control.on('unauthorized', () => this.ended('unauthorized'));
    this.control.start();

    this.heartbeat = new HeartbeatLoop({
      send: async (signal) => {
        const abandoned = [...this.abandonedClaims];
        const sentAt = this.mono.now();
        const r = await this.client.heartbeat(id, { version: VERSION, jobs: [...this.jobs.values()].map((j) => ({ id: j.id, attempt: j.attempt })), ...(abandoned.length ? { abandoned } : {}) }, signal);
        for (const seq of abandoned) this.abandonedClaims.delete(seq);
        if (this.lease) {
          this.lease.renew(sentAt);
          this.guard?.renew(this.lease.deadline);
        }
        return r;
      },
      intervalMs: config.heartbeatIntervalMs,
      // not at once: the first claim and the control channel go first, on a server that may be busy
      delayFirst: true,
      sleep: this.sleep,
      log: this.log,
      onResponse: (r) => {
        this.servers?.reachable();
        this.learnServers(r.servers);
        this.onHeartbeat(r);
      },
      onFailure: (err) => {
        if (!(err instanceof NetworkError)) return void this.servers?.reachable();
        const next = this.servers?.unreachable();
        if (next) this.switchServer(next, err.message);
      },
      onEnded: (why) => this.ended(why),
    });
    this.heartbeat.start();
  }

  private learnServers(urls: string[] | undefined): void {
    if (this.servers?.update(urls)) this.log.info({ servers: this.servers.known }, 'servers known');
  }

  /** The current server stopped answering: everything goes to another one from now on. */
  private switchServer(url: string, reason: string): void {
    const from = this.client.server;
    this.log.warn({ from, to: url, reason }, 'server unreachable; switching to another server');
    this.client.use(url);
    this.control?.reconnect();
    this.reconsider();
  }

  private onControl(name: ControlEventName, data: any): void {
    switch (name) {
      case 'hello':
        // The state the server holds for us; covers enable/disable events missed while away.
        this.setEnabled(data?.state !== 'disabled');
        if (data?.state === 'draining') this.requestStop('drain', 'runner is draining');
        break;
      case 'job':
        this.changed.fire(); // claim now if a slot is free and no claim is in flight
        break;
      case 'cancel':
        this.killJob(Number(data?.jobId), 'cancelled');
        break;
      case 'disable':
        this.setEnabled(false);
        break;
      case 'enable':
        this.setEnabled(true);
        break;
      case 'drain':
        this.requestStop('drain', 'drained by operator');
        break;
      case 'delete':
        this.requestStop('delete', 'deleted by operator');
        break;
      default:
        break;
    }
  }

  private onHeartbeat(r: HeartbeatResponse): void {
    for (const id of r.cancel) this.killJob(id, 'cancelled');
    for (const id of r.lost) {
      // Of several attempts of one job here, only the newest may still hold the claim.
      const mine = [...this.jobs.values()].filter((j) => j.id === id).sort((a, b) => b.attempt - a.attempt);
      for (const j of mine.length > 1 ? mine.slice(1) : mine) {
        this.log.warn({ jobId: id, attempt: j.attempt }, 'claim lost; killing job without reporting');
        j.kill('lost');
      }
    }
    if (r.state === 'draining') this.requestStop('drain', 'runner is draining');
  }

  private setEnabled(on: boolean): void {
    if (this.enabled === on) return;
    this.enabled = on;
    this.log.info(on ? 'runner enabled; claiming' : 'runner disabled; not claiming (running jobs continue)');
    this.reconsider();
  }

  private killJob(jobId: number, reason: KillReason): void {
    for (const j of this.jobs.values()) if (j.id === jobId) j.kill(reason);
  }

  private canClaim(): boolean {
    const c = this.config;
    // Right after registration the first claim goes out with the channel still opening: it does
    // not wait for the hello (the server refuses claims of a disabled or draining runner anyway).
    if (!c || !this.registered || !this.prepared || !this.enabled || this.stop || !(this.control?.connected || this.control?.opening)) return false;
    if (this.lease && !this.lease.check()) return false;
    if (c.ephemeral && this.jobsTaken >= 1) return false;
    return true;
  }

  private freeSlots(): number {
    const c = this.config!;
    const free = c.maxJobsPerRunner - this.jobs.size;
    return c.ephemeral ? Math.min(free, 1 - this.jobsTaken) : free;
  }

  /** Something changed: an in-flight claim that may no longer be made is aborted; loops re-check. */
  private reconsider(): void {
    if (this.claimAbort && !this.canClaim()) this.claimAbort.abort();
    this.changed.fire();
  }

  private async until(cond: () => boolean): Promise<void> {
    while (!cond()) await this.changed.wait();
  }

  /** One claim request at a time; long-polls while slots are free. */
  private async claimLoop(): Promise<void> {
    const backoff = new Backoff({ baseMs: 500, maxMs: 10_000 });
    const id = this.identity!.id;
    while (!this.stop) {
      if (!this.canClaim() || this.freeSlots() <= 0) {
        await this.changed.wait();
        continue;
      }
      const abort = (this.claimAbort = new AbortController());
      const seq = this.config!.claimSeq ? (this.claimSeq = (this.claimSeq + 1) % 2 ** 31) : undefined;
      try {
        const r = await this.client.claim(id, { max: this.freeSlots(), waitMs: CLAIM_WAIT_MS, ...(seq !== undefined ? { seq } : {}) }, abort.signal);
        backoff.reset();
        // First thing on an answer (it may have been read late, by an agent that was frozen): jobs
        // claimed under a lease that has run out are not started; the server takes them back.
        if (r.jobs.length && this.lease && !this.lease.check()) {
          this.log.warn({ jobs: r.jobs.map((j) => j.id) }, 'claim answered after the lease ran out; not starting its jobs');
          if (seq !== undefined) this.unseenClaim(seq);
          continue;
        }
        for (const job of r.jobs) this.startJob(job);
        if (r.stop) this.ended('gone');
      } catch (err) {
        // The server may have answered it anyway, unseen: the next heartbeat says so (ClaimLedger).
        if (seq !== undefined) this.unseenClaim(seq);
        if (abort.signal.aborted) continue;
        const cls = classify(err);
        if (cls === 'gone' || cls === 'unauthorized') this.ended(cls);
        else {
          const delayMs = backoff.next();
          this.log.warn({ delayMs, reason: (err as Error).message }, 'claim failed; retrying');
          const wake = new AbortController();
          void this.changed.wait(wake.signal).then(() => wake.abort());
          await this.sleep(delayMs, wake.signal);
          wake.abort();
        }
      } finally {
        this.claimAbort = undefined;
      }
    }
  }

  private unseenClaim(seq: number): void {
    this.abandonedClaims.add(seq);
    // Only recent ones matter (the server forgets them after the lost-claim timeout anyway).
    for (const old of this.abandonedClaims) {
      if (this.abandonedClaims.size <= MAX_UNSEEN_CLAIMS) break;
      this.abandonedClaims.delete(old);
    }
  }

  private startJob(job: ClaimedJob): void {
    const key = `${job.id}:${job.attempt}`;
    const log = this.log.child({ jobId: job.id, attempt: job.attempt });
    const lease = this.lease;
    const epoch = lease?.epoch ?? 0;
    const exec = new JobExecution(job, {
      client: this.client,
      workspace: this.workspace,
      distribution: this.distribution,
      privateKey: this.identity!.privateKey,
      runnerId: this.identity!.id,
      pool: this.config!.pool,
      graceMs: this.graceMs,
      clock: this.clock,
      sleep: this.sleep,
      log,
      baseEnv: this.jobBaseEnv,
      onStarted: () => this.emit('job-started', { jobId: job.id, attempt: job.attempt }),
      leaseHolds: () => !lease || lease.holds(epoch),
      leaseKillGraceMs: this.config!.leaseKillGraceMs ?? 1000,
      guard: this.guard,
    });
    this.jobs.set(key, exec);
    this.jobsTaken++;
    log.info({ commands: job.commands.length, timeoutMs: job.timeoutMs }, 'job claimed');
    // A stop that is already under way applies to the new job too.
    if (this.stop?.kind === 'delete') exec.kill('deleted');
    else if (this.stop && this.stop.kind !== 'drain') exec.kill('lost');
    else if (this.forced) exec.kill('shutdown');
    const p = exec
      .run()
      .catch((err): ExecutionSummary => {
        log.error({ err }, 'job execution failed unexpectedly');
        return { jobId: job.id, attempt: job.attempt, exitCode: null, outcome: 'failed', error: (err as Error).message, durationMs: 0, reported: false, logLines: 0 };
      })
      .then((summary) => {
        this.jobs.delete(key);
        this.running.delete(p);
        log.info({ outcome: summary.outcome, exitCode: summary.exitCode, reported: summary.reported, durationMs: summary.durationMs, logLines: summary.logLines }, 'job finished');
        this.emit('job-finished', summary);
        if (this.config?.ephemeral) this.requestStop('drain', 'ephemeral runner finished its job');
        this.reconsider();
      });
    this.running.add(p);
  }

  /** The server ended this runner: terminated (410) or its credential refused (401), seen on any call. */
  private ended(why: 'gone' | 'unauthorized'): void {
    if (why === 'gone') this.requestStop('gone', 'the server terminated this runner');
    else this.requestStop('unauthorized', 'the runner credential was revoked (did another agent register with this id?)');
  }

  /** Starts stopping; a stronger kind (delete > gone > unauthorized > drain) overrides a weaker one. */
  private requestStop(kind: StopKind, reason: string): void {
    // a drain the server or the job asked for (operator, ephemeral) ends the runner for good
    if (kind === 'drain' && reason !== SHUTDOWN) this.keepIdentity = false;
    if (this.stop && PRIORITY[this.stop.kind] >= PRIORITY[kind]) return;
    this.stop = { kind, reason };
    this.log.info({ kind, reason, runningJobs: this.jobs.size }, kind === 'drain' ? 'draining: finishing running jobs, claiming nothing more' : 'stopping');
    this.emit('stopping', { kind, reason });
    this.halt.abort();
    if (kind === 'delete') for (const j of this.jobs.values()) j.kill('deleted');
    else if (kind !== 'drain') for (const j of this.jobs.values()) j.kill('lost');
    this.reconsider();
  }

  /** After the last job: close the channel and heartbeats, then what the kind of stop asks for. */
  private async finish(): Promise<AgentExit> {
    const stop = this.stop ?? { kind: 'drain' as const, reason: 'stopped' };
    this.claimAbort?.abort();
    await Promise.all([this.control?.close(), this.heartbeat?.close()]);
    switch (stop.kind) {
      case 'delete':
        // The server already terminated us; a quick best-effort deregister keeps the contract.
        await this.client.deregister(this.identity!.id, AbortSignal.timeout(2000)).catch(() => {});
        this.workspace.removeAll();
        this.stateDir.removeOwned();
        this.log.info('runner deleted: state and working dirs removed');
        return { code: 0, reason: stop.reason };
      case 'gone':
        forgetIdentity(this.stateDir.identityFile);
        return { code: 0, reason: stop.reason };
      case 'unauthorized':
        return { code: 1, reason: stop.reason };
      case 'drain':
        if (this.registered && this.keepIdentity) await this.goOffline();
        else if (this.registered) await this.deregister();
        return { code: 0, reason: stop.reason };
    }
  }

  /**
   * Tells the server we are gone; retried for a while. "Already gone" counts as done. Either way
   * the identity is discarded: the next start registers as a new runner.
   */
  private async deregister(): Promise<boolean> {
    const deadline = this.clock.now() + Math.max(this.graceMs, 5000);
    const backoff = new Backoff({ baseMs: 200, maxMs: 2000 });
    for (;;) {
      try {
        await this.client.deregister(this.identity!.id);
        this.log.info('deregistered');
        forgetIdentity(this.stateDir.identityFile); // the server never accepts a deregistered id again
        return true;
      } catch (err) {
        const cls = classify(err);
        if (cls === 'gone' || cls === 'unauthorized' || statusOf(err) === 404) {
          forgetIdentity(this.stateDir.identityFile);
          return true;
        }
        if (this.clock.now() >= deadline) {
          this.log.warn({ reason: (err as Error).message }, 'could not deregister; the server will notice the runner is gone');
          return false;
        }
        await this.sleep(backoff.next());
      }
    }
  }

  /** A clean stop that keeps the identity: the server shows the runner offline now, not after the heartbeat timeout. */
  private async goOffline(): Promise<void> {
    try {
      await this.client.goOffline(this.identity!.id, AbortSignal.timeout(Math.max(2000, Math.min(this.graceMs, 10_000))));
      this.log.info({ stateDir: this.stateDir.path }, 'stopped; the runner is offline and keeps its identity for the next start');
    } catch (err) {
      this.log.warn({ reason: (err as Error).message }, 'could not tell the server; it marks the runner offline when heartbeats stop');
    }
  }

  private async fail(err: Error): Promise<AgentExit> {
    const known = err instanceof RegistrationRefusedError || err instanceof RunnerGoneError || err instanceof SetupFailedError || err instanceof StateDirLockedError;
    this.log.error(known ? { reason: err.message } : { err }, 'agent failed');
    this.halt.abort();
    this.stop ??= { kind: 'drain', reason: err.message };
    for (const j of this.jobs.values()) j.kill('shutdown');
    await Promise.allSettled([...this.running]);
    await Promise.all([this.control?.close(), this.heartbeat?.close()]);
    if (this.registered) await this.deregister();
    if (err instanceof RunnerGoneError) forgetIdentity(this.stateDir.identityFile);
    return { code: 1, reason: err.message };
  }

  private readiness() {
    const connected = !!this.control?.connected;
    const ready = this.registered && this.prepared && connected && !this.stop;
    return { ready, detail: { registered: this.registered, prepared: this.prepared, connected, enabled: this.enabled, stopping: this.stop?.kind ?? null, jobs: this.jobs.size } };
  }
}

function isFatal(err: unknown): boolean {
  return err instanceof SetupFailedError || err instanceof RegistrationRefusedError || err instanceof RunnerGoneError || err instanceof StateDirLockedError;
}
