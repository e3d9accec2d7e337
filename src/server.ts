import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import type { Config } from './config/schema.js';
import { openDb, type Db } from './store/db.js';
import { migrate } from './store/migrate.js';
import { lockEmbeddedStore } from './store/store-lock.js';
import { readInstanceId } from './store/queries/meta.js';
import { systemClock, type Clock } from './lib/clock.js';
import { createLogger, type Logger } from './lib/logger.js';
import { atRestKey } from './lib/sealed.js';
import { ControlHub } from './app/control-hub.js';
import { HeartbeatBuffer } from './app/heartbeat-buffer.js';
import { ClaimLedger } from './app/claim-ledger.js';
import { JobCompleter } from './app/completer.js';
import { LOST_CLAIM_MS } from './app/runners.js';
import { RefusalAudit } from './app/refusal-audit.js';
import { Metrics } from './app/metrics.js';
import { createApp } from './api/app.js';
import type { AppContext } from './app/context.js';
import { createBus } from './app/bus.js';
import { applyPoolConfig, checkConfigDistributions } from './app/pools.js';
import { countAdminTokens, createToken } from './store/queries/tokens.js';
import { Maintenance } from './scheduler/maintenance.js';
import { Scheduler } from './scheduler/scheduler.js';
import { LeaderLock } from './scheduler/leader.js';
import { ProcessProvider } from './providers/process/process-provider.js';
import { containerProvidersFor } from './providers/container/container-provider.js';
import { kubernetesProvidersFor } from './providers/kubernetes/index.js';
import { ecsProvidersFor } from './providers/ecs/index.js';
import { ec2ProvidersFor } from './providers/ec2/index.js';
import type { Provider } from './providers/provider.js';
import { registerProviderApiCalls } from './providers/api-calls.js';
import { VERSION } from './version.js';
import { GithubSource } from './github/service.js';
import { ServerRegistry } from './app/server-registry.js';

export interface ServerOptions {
  config: Config;
  clock?: Clock;
  log?: Logger;
  /** Run the periodic recovery/scheduling loop (tests may drive it by hand). */
  loops?: boolean;
  /** Where a freshly generated admin token is announced (default: stdout). */
  announce?: (line: string) => void;
  /** Leave process runners running on close() (default: they stop with the server). */
  keepRunnersOnClose?: boolean;
  /** Where the config file is: a pool's distribution file there is imported at start. Default: cwd. */
  configDir?: string;
  /** Compute providers (default: the process provider). */
  providers?: Provider[];
}

/** Something start() brought up, closed by close() in the reverse order. */
interface Started {
  name: string;
  close: () => Promise<void> | void;
}

/**
 * The control plane and its only composition root: store, bus, control hub, services, providers,
 * scheduler, GitHub source and HTTP. start() builds and starts them in order; close() closes them
 * in the reverse order and leaves the store consistent: the loops stop first, then the runners
 * this server started (while HTTP still answers their last calls), then HTTP, then the services
 * that buffer writes (results, heartbeats, refusals) flush, and the store closes last.
 */
export class RunyardServer {
  readonly config: Config;
  readonly clock: Clock;
  readonly log: Logger;
  readonly bus = createBus();
  readonly hub = new ControlHub();
  readonly metrics = new Metrics();
  db!: Db;
  ctx!: AppContext;
  github!: GithubSource;
  maintenance!: Maintenance;
  scheduler!: Scheduler;
  leader!: LeaderLock;
  providers = new Map<string, Provider>();
  instanceId = '';
  url = '';
  /** The admin token, when this start generated or was given it. */
  adminToken: string | undefined;
  private http: Server | undefined;
  private registry: ServerRegistry | undefined;
  /** what start() brought up, in order */
  private started: Started[] = [];

  constructor(private opts: ServerOptions) {
    this.config = opts.config;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? createLogger({ level: opts.config.logLevel });
  }

  /** Where relative paths of the config are read from (a distribution file next to runyard.yaml). */
  private get configDir(): string {
    return resolve(this.opts.configDir ?? '.');
  }

  get dataDir(): string {
    return resolve(this.config.dataDir);
  }

  async start(): Promise<this> {
    mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    if (!this.config.store.url) {
      const release = lockEmbeddedStore(this.dataDir);
      this.started.push({ name: 'store lock', close: release });
    }
    this.db = await openDb({ url: this.config.store.url, dataDir: join(this.dataDir, 'data') });
    this.started.push({ name: 'store', close: () => this.db.close() });
    const applied = await migrate(this.db);
    if (applied.length) this.log.info({ applied }, 'migrations applied');

    // Services that buffer writes: closed (flushed) after HTTP, before the store.
    const audit = new RefusalAudit(this.db, this.clock, this.log);
    this.started.push({ name: 'refusal audit', close: () => audit.close() });
    const heartbeats = new HeartbeatBuffer(this.db, this.log);
    this.started.push({ name: 'heartbeat buffer', close: () => heartbeats.close() });
    const completer = new JobCompleter(this.db, this.clock);
    this.started.push({ name: 'completer', close: () => completer.close() });
    this.ctx = {
      db: this.db,
      config: this.config,
      clock: this.clock,
      log: this.log,
      hub: this.hub,
      heartbeats,
      claims: new ClaimLedger(LOST_CLAIM_MS),
      completer,
      metrics: this.metrics,
      audit,
      secretKey: atRestKey(this.secretKeyText()),
      classSizes: this.config.classSizes,
      bus: this.bus,
      version: VERSION,
      providers: this.providers,
      servers: () => this.registry?.live ?? [this.url],
    };
    // before the admin token: a config refused here leaves no token printed
    await checkConfigDistributions(this.ctx, this.configDir);
    await this.ensureAdminToken();
    for (const pool of this.config.pools) await applyPoolConfig(this.ctx, pool, 'config', 'config');

    this.instanceId = await readInstanceId(this.db);
    for (const p of this.opts.providers ?? (await this.defaultProviders())) this.providers.set(p.name, p);
    registerProviderApiCalls(this.metrics.registry, () => this.providers.values());
    this.started.push({
      name: 'providers',
      close: async () => {
        for (const p of this.providers.values()) await p.close();
      },
    });
    this.github = new GithubSource(this.ctx);

    // Built before HTTP so no wake-up is missed; closed after HTTP's last calls are answered (below).
    this.leader = new LeaderLock(this.db, this.log);
    this.scheduler = new Scheduler(this.ctx, this.providers, {
      serverUrl: () => this.url,
      instanceId: this.instanceId,
      stopGraceMs: this.config.scheduler.stopGrace,
      isLeader: () => this.leader.isLeader,
    });
    this.bus.on('work-queued', (pool, count) => {
      const woken = this.hub.wakePool(pool, count);
      if (woken < count) this.hub.nudgePool(pool, count - woken);
      // Jobs that parked claims took need no runner now; more than that may (scale from zero).
      this.scheduler.wake(woken < count);
    });
    // 'load': a runner went busy or idle by a claim or a result; paced, unlike runners coming and going.
    this.bus.on('runners-changed', (why) => this.scheduler.wake(why !== 'load'));

    const { app } = createApp(this.ctx, { github: this.github });
    this.http = await new Promise<Server>((ok, fail) => {
      const s = serve({ fetch: app.fetch, port: this.config.port, hostname: this.config.host }, () => ok(s as Server)) as Server;
      s.once('error', fail);
    });
    this.started.push({ name: 'http', close: () => this.closeHttp() });
    this.http.keepAliveTimeout = 65_000;
    const port = (this.http.address() as AddressInfo).port;
    const host = this.config.host === '0.0.0.0' || this.config.host === '::' ? '127.0.0.1' : this.config.host;
    this.url = this.config.publicUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    writeFileSync(join(this.dataDir, 'server.json'), JSON.stringify({ url: this.url, pid: process.pid }) + '\n', { mode: 0o600 });
    const registry = new ServerRegistry(this.db, this.clock, this.log, Math.max(200, Math.min(2000, Math.floor(this.config.scheduler.offlineAfter / 4))));
    this.registry = registry;
    await registry.start(this.url);
    this.started.push({ name: 'server registry', close: () => registry.close() });
    heartbeats.start();
    completer.start();

    this.started.push({ name: 'leader lock', close: () => this.leader.close() });
    this.started.push({ name: 'scheduler', close: () => this.closeScheduler() });
    this.maintenance = new Maintenance(this.ctx, () => this.leader.check());
    this.maintenance.steps.push({ name: 'reconcile', run: () => this.scheduler.reconcile() });
    this.maintenance.steps.push({ name: 'schedule', run: (now) => this.scheduler.pass(now) });
    this.maintenance.steps.push({ name: 'github', run: (now) => this.github.tick(now) });
    this.started.push({ name: 'maintenance', close: () => this.maintenance.close() });
    if (this.opts.loops !== false) {
      // First pass at once: adopt or reap runners from before a restart, then scale.
      await this.maintenance.tick();
      this.maintenance.start();
    }
    this.log.info({ url: this.url, store: this.db.kind, pools: this.config.pools.map((p) => p.name) }, 'runyard is up');
    return this;
  }

  private async defaultProviders(): Promise<Provider[]> {
    const args = [this.config, process.env, this.log, this.instanceId] as const;
    return [
      new ProcessProvider(this.dataDir, this.log, this.instanceId),
      ...containerProvidersFor(...args),
      ...(await kubernetesProvidersFor(...args)),
      ...(await ecsProvidersFor(...args)),
      ...(await ec2ProvidersFor(...args)),
    ];
  }

  private secretKeyText(): string {
    if (this.config.secretKey) return this.config.secretKey;
    const file = join(this.dataDir, 'secret.key');
    if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
    return readFileSync(file, 'utf8').trim();
  }

  /**
   * The admin token: RUNYARD_ADMIN_TOKEN / adminToken when set; otherwise generated on the first
   * start, printed once, and written (mode 600) where the CLI on this machine finds it.
   */
  private async ensureAdminToken(): Promise<void> {
    const now = this.clock.now();
    const file = join(this.dataDir, 'admin-token');
    if (this.config.adminToken) {
      await createToken(this.db, now, { kind: 'admin', secret: this.config.adminToken, description: 'configured admin token' });
      this.adminToken = this.config.adminToken;
      return;
    }
    if ((await countAdminTokens(this.db)) > 0) return;
    const { secret } = await createToken(this.db, now, { kind: 'admin', description: 'generated on first start' });
    writeFileSync(file, secret + '\n', { mode: 0o600 });
    this.adminToken = secret;
    (this.opts.announce ?? ((l) => process.stdout.write(l + '\n')))(
      `Admin token (shown once; also saved to ${file}):\n  ${secret}`,
    );
  }

  /** The scheduler, then the runners this server started (unless kept), while HTTP still answers them. */
  private async closeScheduler(): Promise<void> {
    await this.scheduler.close();
    if (this.opts.keepRunnersOnClose !== true) await this.scheduler.stopLocalRunners().catch((err) => this.log.error({ err }, 'could not stop local runners'));
  }

  /** Parked claims are answered, then open connections cut. */
  private async closeHttp(): Promise<void> {
    this.hub.closeAll();
    const http = this.http!;
    const closed = new Promise<void>((ok) => http.close(() => ok()));
    http.closeAllConnections();
    await closed;
  }

  /**
   * Closes what start() brought up, in the reverse order (also after a start that failed half
   * way). One that fails does not keep the others open; the first failure is thrown at the end.
   */
  async close(): Promise<void> {
    let failure: { err: unknown } | undefined;
    for (const s of this.started.splice(0).reverse()) {
      try {
        await s.close();
      } catch (err) {
        this.log.error({ err, service: s.name }, 'close failed');
        failure ??= { err };
      }
    }
    this.log.flush?.();
    if (failure) throw failure.err;
  }
}
