import type { ClassSize, PoolConfig } from '../config/schema.js';

/** Everything a provider needs to start one runner that finds its way to the server. */
export interface LaunchSpec {
  runnerId: string;
  name: string;
  pool: PoolConfig;
  classSize?: ClassSize;
  /** A dynamic image: the runner image built for it (`image`) and the base the job named. */
  dynamic?: { image: string; base: string };
  serverUrl: string;
  /** A registration token bound to this runner id. */
  registrationToken: string;
  /** Labels every resource so orphans can be found after a crash. */
  instanceId: string;
}

/** A job's base image to run runners of, and the pool's runner image that carries the agent. */
export interface ImageRequest {
  base: string;
  agentImage: string;
}

export interface ProviderRunner {
  runnerId: string;
  /** The provider's own handle: a pid, a container id, a task ARN. */
  ref: string;
  pool: string;
  alive: boolean;
  startedAt: number;
}

/**
 * A compute provider. Small on purpose: the scheduler decides, the provider only creates,
 * lists, describes and terminates. "Already gone" is success everywhere.
 */
export interface Provider {
  readonly name: string;
  /**
   * Who owns the runners this instance lists: every provider_ref it hands out ends in
   * `@<owner>`, so a server only reconciles runners it can see (several servers, one database).
   */
  readonly owner: string;
  /**
   * Its runners run on the server's own machine and end with it: a graceful shutdown stops them
   * and their jobs go back to the queue (the process provider). Runners elsewhere (containers,
   * pods, tasks, instances) are left running and adopted by the next start.
   */
  readonly runsOnServerHost?: boolean;
  create(spec: LaunchSpec): Promise<{ ref: string }>;
  /**
   * Starts several runners of one pool at once, one promise per spec in order (each fails on its
   * own). Optional: for providers whose API launches many per call (ECS RunTask with `count`);
   * the scheduler uses it when present, else create() per runner.
   */
  createMany?(specs: LaunchSpec[]): Promise<{ ref: string }>[];
  /** How many runners one createMany call takes best (ECS: 10 per RunTask); default all at once. */
  readonly batchSize?: number;
  /**
   * Finds or builds the runner image for a dynamic base image; `progress` gets the build's lines
   * (only when it builds). Providers without it cannot run jobs that name their own image. An
   * error with `retryable: true` (engine unreachable) leaves the jobs waiting; any other fails them.
   */
  prepareImage?(req: ImageRequest, progress: (line: string) => void): Promise<{ image: string; built: boolean }>;
  /** The runners this runyard instance started and that still exist. */
  list(): Promise<ProviderRunner[]>;
  describe(runnerId: string): Promise<ProviderRunner | undefined>;
  /** Asks the runner to stop (it drains), then forces it after `graceMs`. */
  terminate(runnerId: string, opts: { graceMs: number }): Promise<void>;
  /** Called when a runner's process or container ends by itself (crash, drained, ephemeral). */
  onExit(listener: (runnerId: string, detail: string) => void): void;
  /**
   * Every pool the store holds, before each reconcile: providers that list their runners per
   * region, cluster or endpoint also look where pools applied through the API (not only those of
   * the config file) put runners, so those are adopted after a restart instead of lost.
   */
  learnPools?(pools: PoolConfig[]): void;
  close(): Promise<void>;
}
