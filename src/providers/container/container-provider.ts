import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import type { ImageRequest, LaunchSpec, Provider, ProviderRunner } from '../provider.js';
import { dynamicImageContainerfile, dynamicImageTag } from './dynamic-images.js';
import type { Logger } from '../../lib/logger.js';
import type { Config } from '../../config/schema.js';
import { sleep } from '../../lib/clock.js';
import { launchedAgentPassEnv } from '../../lib/base-env.js';

export const LABEL_INSTANCE = 'runyard.instance';
export const LABEL_OWNER = 'runyard.owner';
export const LABEL_POOL = 'runyard.pool';
export const LABEL_RUNNER = 'runyard.runner';
/** The base image a dynamic-image runner was built from. */
export const LABEL_BASE = 'runyard.base';

/** Where the agent keeps its identity and job dirs inside the container. */
export const CONTAINER_STATE_DIR = '/var/lib/runyard/state';
export const CONTAINER_WORK_DIR = '/work';

export interface ContainerProviderOptions {
  /**
   * The engine, in the DOCKER_HOST convention: unix:///run/podman/podman.sock, tcp://host:2375,
   * or a bare socket path. Default: $DOCKER_HOST, else /var/run/docker.sock.
   */
  host?: string;
  /** The database's instance id: every container is labelled with it. */
  instanceId: string;
  log: Logger;
  /** Container network (default `host`, so runners reach a server on 127.0.0.1). */
  network?: string;
  /** Resource limits for every container; must not exceed the engine host's hard limits. */
  ulimits?: { Name: string; Soft: number; Hard: number }[];
  /** Run a tiny init as PID 1 that reaps the jobs' orphans (default true). */
  init?: boolean;
  /** How often a watched container is inspected besides waiting on it (default 5 s). */
  pollMs?: number;
}

export const DEFAULT_ULIMITS = [
  { Name: 'nofile', Soft: 20000, Hard: 20000 },
  { Name: 'nproc', Soft: 1000, Hard: 1000 },
];

/** The engine could not be reached or refused a call: the message says which and where. */
export class ContainerEngineError extends Error {
  constructor(
    message: string,
    readonly cause?: unknown,
    /** the engine could not be reached: worth trying again later, nothing is wrong with the request */
    readonly retryable = false,
  ) {
    super(message);
    this.name = 'ContainerEngineError';
  }
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

/** Container events after which a watched runner may have ended. */
const ENDING_EVENTS = new Set(['die', 'stop', 'kill', 'oom', 'destroy', 'remove', 'cleanup']);

function statusOf(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}

function isUnreachable(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return !!code && UNREACHABLE.has(code);
}

/** Parses a DOCKER_HOST-style address into dockerode options and a display form. */
export function engineAddress(host: string | undefined): { opts: Docker.DockerOptions; display: string } {
  const h = host?.trim() || process.env.DOCKER_HOST?.trim() || 'unix:///var/run/docker.sock';
  if (h.startsWith('unix://')) return { opts: { socketPath: h.slice('unix://'.length) }, display: h };
  if (h.startsWith('/')) return { opts: { socketPath: h }, display: `unix://${h}` };
  const m = h.match(/^(tcp|http|https):\/\/([^/:]+|\[[^\]]+\]):?(\d+)?\/?$/);
  if (!m) throw new ContainerEngineError(`container engine address ${JSON.stringify(h)} is not unix:///path or tcp://host:port`);
  const protocol = m[1] === 'https' || (m[1] === 'tcp' && process.env.DOCKER_TLS_VERIFY) ? 'https' : 'http';
  const port = Number(m[3] ?? (protocol === 'https' ? 2376 : 2375));
  return { opts: { host: m[2]!.replace(/^\[|\]$/g, ''), port, protocol }, display: `${m[1]}://${m[2]}:${port}` };
}

interface Watch {
  done: Promise<void>;
  abort: AbortController;
  /** check the container now instead of at the next poll */
  poke: () => void;
}

/**
 * Runners as containers on a Docker-API engine (Docker, or podman's compatible service). Each
 * container carries labels naming the runyard instance, this provider's owner (the engine it
 * talks to), the pool and the runner id, so a restarted control plane finds them again. The
 * agent inside drains on SIGTERM; containers are removed (with their anonymous volumes) once they
 * have stopped, so nothing is left behind.
 */
export class ContainerProvider implements Provider {
  readonly name = 'container';
  readonly owner: string;
  readonly engine: string;
  private docker: Docker;
  private listeners: ((runnerId: string, detail: string) => void)[] = [];
  private watches = new Map<string, Watch>();
  /** runners between create and start: list() must not reap their 'created' containers */
  private creating = new Set<string>();
  private closed = false;
  private readonly pollMs: number;
  private listening = false;
  private stopListening = () => {};
  /** image builds in progress, by base and agent image: concurrent requests share one */
  private builds = new Map<string, Promise<{ image: string; built: boolean }>>();

  constructor(private opts: ContainerProviderOptions) {
    this.pollMs = opts.pollMs ?? 5_000;
    const { opts: dockerOpts, display } = engineAddress(opts.host);
    this.engine = display;
    this.docker = new Docker(dockerOpts);
    // A socket is this machine's engine; a TCP address names one engine for every server.
    const where = dockerOpts.socketPath ? `${hostname()}:${display}` : display;
    this.owner = createHash('sha256').update(where).digest('hex').slice(0, 12);
  }

  /** Turns a dockerode failure into a message that says what was being done and where. */
  private explain(what: string, err: unknown, spec?: LaunchSpec): Error {
    if (err instanceof ContainerEngineError) return err;
    const msg = (err as Error)?.message ?? String(err);
    if (isUnreachable(err)) return new ContainerEngineError(`container engine unreachable at ${this.engine} (${what}): ${msg}`, err, true);
    if (spec && statusOf(err) === 404 && /image/i.test(msg))
      return new ContainerEngineError(`image ${JSON.stringify(spec.dynamic?.image ?? spec.pool.image)} not found on the container engine at ${this.engine}; build or load it there first (${what})`, err);
    const detail = (err as { json?: { message?: string } })?.json?.message ?? msg;
    return new ContainerEngineError(`container engine at ${this.engine} refused ${what}: ${detail}`, err);
  }

  /** Fails with a clear message when the engine does not answer. */
  async ping(): Promise<void> {
    try {
      await this.docker.ping();
    } catch (err) {
      throw this.explain('ping', err);
    }
  }

  async create(spec: LaunchSpec): Promise<{ ref: string }> {
    if (!spec.pool.image) throw new ContainerEngineError(`pool ${spec.pool.name} has no image: the container provider needs one`);
    const env: Record<string, string> = {
      // the container's environment is the image's and the pool's: jobs may have all of it (base-env.ts)
      ...launchedAgentPassEnv('container'),
      ...spec.pool.env,
      RUNYARD_SERVER: spec.serverUrl,
      RUNYARD_REGISTRATION_TOKEN: spec.registrationToken,
      RUNYARD_RUNNER_ID: spec.runnerId,
      RUNYARD_RUNNER_NAME: spec.name,
      RUNYARD_STATE_DIR: CONTAINER_STATE_DIR,
      RUNYARD_WORK_DIR: CONTAINER_WORK_DIR,
      RUNYARD_INSTANCE_ID: spec.instanceId,
    };
    const hostConfig: Docker.HostConfig = {
      NetworkMode: this.opts.network ?? 'host',
      Ulimits: this.opts.ulimits ?? DEFAULT_ULIMITS,
      Init: this.opts.init ?? true,
    };
    if (spec.classSize) {
      hostConfig.NanoCpus = Math.round(spec.classSize.cpu * 1e9);
      hostConfig.Memory = spec.classSize.memoryMb * 1024 * 1024;
      hostConfig.MemorySwap = hostConfig.Memory; // the class size is the whole budget: no swap on top
    }
    this.creating.add(spec.runnerId);
    let container: Docker.Container | undefined;
    try {
      try {
        container = await this.docker.createContainer({
          name: `runyard-${spec.runnerId}`,
          Image: spec.dynamic?.image ?? spec.pool.image,
          Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
          Labels: {
            [LABEL_INSTANCE]: spec.instanceId,
            [LABEL_OWNER]: this.owner,
            [LABEL_POOL]: spec.pool.name,
            [LABEL_RUNNER]: spec.runnerId,
            ...(spec.dynamic ? { [LABEL_BASE]: spec.dynamic.base } : {}),
          },
          HostConfig: hostConfig,
          StopSignal: 'SIGTERM',
        });
      } catch (err) {
        throw this.explain('create container', err, spec);
      }
      try {
        await container.start();
      } catch (err) {
        await container.remove({ force: true, v: true }).catch(() => {});
        throw this.explain('start container', err, spec);
      }
    } finally {
      this.creating.delete(spec.runnerId);
    }
    this.watch(spec.runnerId, container.id);
    this.opts.log.info({ runnerId: spec.runnerId, container: container.id.slice(0, 12), image: spec.dynamic?.image ?? spec.pool.image, engine: this.engine }, 'runner container started');
    return { ref: this.ref(container.id) };
  }

  /**
   * The runner image for a job's base: the base with the agent bundle of the pool's runner image
   * layered on, tagged by a digest of both image ids, so it is built once and reused until either
   * changes. A base the engine lacks is pulled first. Failures carry the engine's own message.
   */
  prepareImage(req: ImageRequest, progress: (line: string) => void): Promise<{ image: string; built: boolean }> {
    const key = `${req.base}\n${req.agentImage}`;
    let build = this.builds.get(key);
    if (!build) {
      build = this.findOrBuild(req, progress).finally(() => this.builds.delete(key));
      this.builds.set(key, build);
    }
    return build;
  }

  private async findOrBuild({ base, agentImage }: ImageRequest, progress: (line: string) => void): Promise<{ image: string; built: boolean }> {
    const agent = await this.imageId(agentImage);
    if (!agent) throw new ContainerEngineError(`runner image ${JSON.stringify(agentImage)} not found on the container engine at ${this.engine}; build it there first (Containerfile)`);
    let baseId = await this.imageId(base);
    if (!baseId) {
      progress(`pulling base image ${base}`);
      try {
        await this.follow(await this.docker.pull(base), progress);
      } catch (err) {
        throw this.explain(`pull of base image ${base}`, err);
      }
      baseId = await this.imageId(base);
      if (!baseId) throw new ContainerEngineError(`base image ${base} is still missing on the container engine at ${this.engine} after its pull`);
    }
    const tag = dynamicImageTag(baseId, agent);
    if (await this.imageId(tag)) return { image: tag, built: false };

    progress(`building runner image ${tag} from base ${base} with the agent of ${agentImage}`);
    const dir = await mkdtemp(join(tmpdir(), 'runyard-build-'));
    try {
      await writeFile(join(dir, 'Containerfile'), dynamicImageContainerfile(base, baseId, agentImage, agent));
      try {
        const stream = await this.docker.buildImage({ context: dir, src: ['Containerfile'] }, { t: tag, dockerfile: 'Containerfile', rm: true, forcerm: true, labels: { [LABEL_BASE]: base } });
        await this.follow(stream, progress);
      } catch (err) {
        throw this.explain(`build of a runner image from base ${base}`, err);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    if (!(await this.imageId(tag))) throw new ContainerEngineError(`the container engine at ${this.engine} reported no error but has no image ${tag} after the build`);
    progress(`built runner image ${tag}`);
    return { image: tag, built: true };
  }

  /** The image's id, or undefined when the engine does not have it. */
  private async imageId(name: string): Promise<string | undefined> {
    try {
      return (await this.docker.getImage(name).inspect()).Id;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.explain(`inspect image ${name}`, err);
    }
  }

  /** Reads a pull or build stream to its end; an error event in it (engines report failures there) rejects. */
  private follow(stream: NodeJS.ReadableStream, progress: (line: string) => void): Promise<void> {
    return new Promise((ok, fail) => {
      let failure: string | undefined;
      this.docker.modem.followProgress(
        stream,
        (err: Error | null) => (err ? fail(err) : failure ? fail(new Error(failure)) : ok()),
        (ev: { stream?: string; status?: string; progress?: string; error?: string; errorDetail?: { message?: string } }) => {
          if (ev.error || ev.errorDetail) failure = (ev.errorDetail?.message ?? ev.error ?? '').trim();
          const text = ev.stream ?? (ev.status ? `${ev.status}${ev.progress ? ` ${ev.progress}` : ''}` : '');
          for (const line of text.split('\n')) if (line.trim()) progress(line.trimEnd());
        },
      );
    });
  }

  private ref(containerId: string) {
    return `container:${containerId.slice(0, 12)}@${this.owner}`;
  }

  onExit(listener: (runnerId: string, detail: string) => void): void {
    this.listeners.push(listener);
  }

  private async containers(extra: string[] = []): Promise<Docker.ContainerInfo[]> {
    try {
      return await this.docker.listContainers({
        all: true,
        filters: { label: [`${LABEL_INSTANCE}=${this.opts.instanceId}`, `${LABEL_OWNER}=${this.owner}`, ...extra] },
      });
    } catch (err) {
      throw this.explain('list containers', err);
    }
  }

  /**
   * The runner containers of this instance on this engine. Running ones are watched (a fresh
   * instance adopts them); stopped ones nobody watches (they ended while no control plane ran)
   * are removed and left out, like the process provider's dead runners.
   */
  async list(): Promise<ProviderRunner[]> {
    const out: ProviderRunner[] = [];
    for (const c of await this.containers()) {
      const runnerId = c.Labels[LABEL_RUNNER];
      if (!runnerId) continue;
      const alive = c.State === 'running' || c.State === 'restarting' || c.State === 'paused';
      if (alive) this.watch(runnerId, c.Id);
      else if (!this.watches.has(runnerId) && !this.creating.has(runnerId)) {
        // a fresh 'created' one may be another server's start in progress (same engine, same database)
        if (c.State === 'created' && Date.now() - c.Created * 1000 < 60_000) continue;
        await this.removeContainer(c.Id).catch((err) => this.opts.log.warn({ err, runnerId }, 'could not remove a stopped runner container'));
        continue;
      }
      out.push({ runnerId, ref: this.ref(c.Id), pool: c.Labels[LABEL_POOL] ?? '', alive, startedAt: c.Created * 1000 });
    }
    return out;
  }

  async describe(runnerId: string): Promise<ProviderRunner | undefined> {
    return (await this.list()).find((r) => r.runnerId === runnerId);
  }

  /** SIGTERM (the agent drains), SIGKILL after `graceMs`, then the container is removed. */
  async terminate(runnerId: string, opts: { graceMs: number }): Promise<void> {
    const found = await this.containers([`${LABEL_RUNNER}=${runnerId}`]);
    for (const c of found) {
      const container = this.docker.getContainer(c.Id);
      if (c.State === 'running' || c.State === 'paused' || c.State === 'restarting') {
        try {
          await container.stop({ t: Math.max(0, Math.ceil(opts.graceMs / 1000)) });
        } catch (err) {
          const s = statusOf(err);
          if (s !== 304 && s !== 404) throw this.explain(`stop container of runner ${runnerId}`, err);
        }
      }
      await this.removeContainer(c.Id, true);
    }
    const w = this.watches.get(runnerId);
    w?.poke();
    await w?.done;
  }

  /** Removes a container with its anonymous volumes; "already gone" is success. */
  private async removeContainer(id: string, waitGone = false): Promise<void> {
    const container = this.docker.getContainer(id);
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        await container.remove({ force: true, v: true });
        return;
      } catch (err) {
        const s = statusOf(err);
        if (s === 404) return;
        if (s !== 409) throw this.explain(`remove container ${id.slice(0, 12)}`, err);
        // 409: a removal is already in progress (our exit watcher); wait for it to finish
        if (!waitGone || Date.now() > deadline) return;
        await sleep(100);
      }
    }
  }

  /**
   * Waits for the container to stop, then removes it and reports the exit. The engine's event
   * stream (one for all containers, see `listen`) pokes the watch the moment a container dies; an
   * inspect every few seconds backs it up, for events lost while the stream reconnects. (A `wait`
   * call per container would be simpler, but podman answers it by polling, which costs a core
   * while runners boot.) A lost connection to the engine is not an exit: the watch keeps trying
   * until the engine answers again.
   */
  private watch(runnerId: string, containerId: string) {
    if (this.watches.has(runnerId) || this.closed) return;
    this.listen();
    const abort = new AbortController();
    const container = this.docker.getContainer(containerId);
    const aborted = new Promise<void>((ok) => abort.signal.addEventListener('abort', () => ok(), { once: true }));
    let poke = () => {};
    const poked = () => new Promise<void>((ok) => (poke = ok));
    const done = (async () => {
      let detail: string | undefined;
      while (!detail) {
        await Promise.race([sleep(this.pollMs), poked(), aborted]);
        if (abort.signal.aborted) return;
        try {
          const info = await container.inspect();
          if (!info.State.Running && !info.State.Paused && !info.State.Restarting && info.State.Status !== 'created') detail = `exited with code ${info.State.ExitCode}`;
        } catch (err) {
          if (abort.signal.aborted) return;
          if (statusOf(err) === 404) detail = 'was removed';
        }
      }
      if (detail !== 'was removed' && !/code 0$/.test(detail)) await this.logTail(runnerId, container);
      this.opts.log.info({ runnerId, container: containerId.slice(0, 12), detail }, 'runner container ended');
      await this.removeContainer(containerId).catch((err) => this.opts.log.warn({ err, runnerId }, 'could not remove runner container'));
      this.watches.delete(runnerId);
      for (const l of this.listeners) l(runnerId, `container ${detail}`);
    })();
    this.watches.set(runnerId, { done, abort, poke: () => poke() });
  }

  /**
   * Follows the engine's container events for this instance's runners and pokes the watch of a
   * runner whose container died or went. Reconnects after a second when the stream ends (engine
   * restarted or unreachable); stops when the provider closes.
   */
  private listen() {
    if (this.listening || this.closed) return;
    this.listening = true;
    const abort = new AbortController();
    this.stopListening = () => abort.abort();
    void (async () => {
      while (!this.closed) {
        try {
          const stream = (await this.docker.getEvents({
            // by label only: podman does not apply an `event` filter next to it; the kind is checked below
            filters: { type: ['container'], label: [`${LABEL_INSTANCE}=${this.opts.instanceId}`] },
            abortSignal: abort.signal,
          })) as NodeJS.ReadableStream;
          let buf = '';
          for await (const chunk of stream) {
            buf += chunk.toString();
            let nl;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl).trim();
              buf = buf.slice(nl + 1);
              if (!line) continue;
              try {
                const ev = JSON.parse(line) as { Action?: string; Actor?: { Attributes?: Record<string, string> } };
                const runnerId = ev.Actor?.Attributes?.[LABEL_RUNNER];
                if (runnerId && ENDING_EVENTS.has(ev.Action ?? '')) this.watches.get(runnerId)?.poke();
              } catch {
                // not an event: ignore the line
              }
            }
          }
        } catch {
          // engine gone or stream cut: the inspect polls cover the gap
        }
        if (!this.closed) await sleep(1_000);
      }
    })();
  }

  /** The last lines a failed runner wrote, into our log before its container goes. */
  private async logTail(runnerId: string, container: Docker.Container) {
    try {
      const buf = (await container.logs({ stdout: true, stderr: true, tail: 20, follow: false })) as unknown as Buffer;
      const text = demux(Buffer.isBuffer(buf) ? buf : Buffer.from(String(buf))).trim();
      if (text) this.opts.log.warn({ runnerId, output: text.slice(-4000) }, 'runner container failed; its last output');
    } catch {
      // the logs are a courtesy
    }
  }

  async close(): Promise<void> {
    // Runners outlive the control plane: a restart adopts them. Only stop watching.
    this.closed = true;
    this.stopListening();
    for (const w of this.watches.values()) w.abort.abort();
    await Promise.allSettled([...this.watches.values()].map((w) => w.done));
    this.watches.clear();
  }
}

/** Docker's multiplexed log stream (8-byte frame headers) to text; plain text passes through. */
export function demux(buf: Buffer): string {
  const parts: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length && (buf[i] === 0 || buf[i] === 1 || buf[i] === 2) && buf[i + 1] === 0 && buf[i + 2] === 0 && buf[i + 3] === 0) {
    const len = buf.readUInt32BE(i + 4);
    parts.push(buf.subarray(i + 8, i + 8 + len));
    i += 8 + len;
  }
  if (i === 0) return buf.toString('utf8');
  return Buffer.concat(parts).toString('utf8');
}

/**
 * The container provider this server should register: when RUNYARD_CONTAINER_HOST or DOCKER_HOST
 * names an engine, or a configured pool uses the container provider (then the default socket).
 * RUNYARD_CONTAINER_NETWORK picks the network (default host); RUNYARD_CONTAINER_INIT=false runs
 * the agent as PID 1 for engines without an init binary.
 */
export function containerProvidersFor(config: Pick<Config, 'pools'>, env: NodeJS.ProcessEnv, log: Logger, instanceId: string): Provider[] {
  const host = env.RUNYARD_CONTAINER_HOST || env.DOCKER_HOST;
  if (!host && !config.pools.some((p) => p.provider === 'container')) return [];
  return [new ContainerProvider({ host, instanceId, log, network: env.RUNYARD_CONTAINER_NETWORK || undefined, init: env.RUNYARD_CONTAINER_INIT !== 'false' })];
}
