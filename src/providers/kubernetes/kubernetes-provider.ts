import { createHash } from 'node:crypto';
import { PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import type { ImageRequest, LaunchSpec, Provider, ProviderRunner } from '../provider.js';
import type { Logger } from '../../lib/logger.js';
import { LABEL_INSTANCE, LABEL_OWNER, LABEL_POOL, LABEL_RUNNER } from '../container/container-provider.js';
import { KubeClient, connectionKey, type Connection } from './kube-client.js';
import { KubeApiError, isConflict, isNotFound } from './kube-errors.js';
import { PodWatch, type PodEvent } from './pod-watch.js';
import { judgePod, unschedulableAfter } from './pod-state.js';
import { buildPod, buildSecret, podName, secretOwners, tokenRef } from './pod-spec.js';
import { kubernetesFieldsOf } from './pool-config.js';
import { ApiCallTally } from '../api-calls.js';

export interface KubernetesProviderOptions {
  instanceId: string;
  log: Logger;
  /** The cluster connections and namespaces of the configured pools: watched from the start (adoption). */
  targets: { connection: Connection; namespace: string }[];
  /** terminationGracePeriodSeconds of every pod: the control plane's stop grace. */
  stopGraceMs: number;
  /** How long a transient waiting reason (CreateContainerConfigError) may last before it is stuck (default 10 s). */
  settleMs?: number;
  /** How long list() waits for the API's first answer before it fails, retryable (default 15 s). */
  syncTimeoutMs?: number;
  now?: () => number;
  env?: NodeJS.ProcessEnv;
  /** Makes the client of a connection (tests inject their own sleep or logging). */
  client?: (c: Connection) => KubeClient;
}

interface Tracked {
  runnerId: string;
  pool: string;
  conn: string;
  namespace: string;
  pod: string;
  startTimeoutMs: number;
  /** the exit was reported: nothing more is said about this runner */
  reported: boolean;
  timer?: NodeJS.Timeout;
  gone: Promise<void>;
  markGone: () => void;
}

/** Runners whose tokens share one Secret at most: it stays small (a Secret holds up to 1 MiB). */
const LAUNCH_MAX = 100;

/** How long terminate waits for the pod to be gone beyond its grace. */
const DELETE_SLACK_MS = 30_000;

/**
 * Runners as Pods through the Kubernetes API. One label-filtered list+watch per cluster
 * connection and namespace feeds a cache that list() and describe() read (no API call per ask);
 * pods that end, get stuck or vanish are reported through onExit with the reason, and ended or
 * stuck ones are deleted so nothing is left behind. A restarted control plane finds its pods by
 * label (instance, owner) in the first list: adoption.
 */
export class KubernetesProvider implements Provider {
  readonly name = 'kubernetes';
  readonly owner: string;
  private clients = new Map<string, KubeClient>();
  private watches = new Map<string, PodWatch>();
  private runners = new Map<string, Tracked>();
  private listeners: ((runnerId: string, detail: string) => void)[] = [];
  private closed = false;
  private readonly now: () => number;
  private readonly selector: string;

  constructor(private opts: KubernetesProviderOptions) {
    this.now = opts.now ?? Date.now;
    for (const t of opts.targets) this.clientFor(t.connection);
    // the clusters this server talks to: several servers on the same ones judge the same runners
    const servers = [...new Set([...this.clients.values()].map((c) => c.server))].sort();
    this.owner = createHash('sha256').update(servers.join('\n') || 'kubernetes').digest('hex').slice(0, 12);
    this.selector = `${LABEL_INSTANCE}=${opts.instanceId},${LABEL_OWNER}=${this.owner}`;
    for (const t of opts.targets) this.watchFor(connectionKey(t.connection), t.namespace);
  }

  private clientFor(c: Connection): KubeClient {
    const key = connectionKey(c);
    let client = this.clients.get(key);
    if (!client) {
      client = this.opts.client?.(c) ?? new KubeClient(c, this.opts.log, this.opts.env);
      this.clients.set(key, client);
    }
    return client;
  }

  private watchFor(conn: string, namespace: string): PodWatch {
    const key = `${conn}|${namespace}`;
    let w = this.watches.get(key);
    if (!w) {
      w = new PodWatch(this.clients.get(conn)!, namespace, this.selector, (type, pod) => this.onPod(conn, namespace, type, pod), this.opts.log);
      this.watches.set(key, w);
      if (!this.closed) w.start();
    }
    return w;
  }

  /** API calls made so far, by operation, over every connection. */
  apiCalls(): Record<string, number> {
    return ApiCallTally.sum([...this.clients.values()].map((c) => c.tally));
  }

  onExit(listener: (runnerId: string, detail: string) => void): void {
    this.listeners.push(listener);
  }

  private track(runnerId: string, pool: string, conn: string, namespace: string, startTimeoutMs: number): Tracked {
    let t = this.runners.get(runnerId);
    if (!t) {
      let markGone = () => {};
      const gone = new Promise<void>((ok) => (markGone = ok));
      t = { runnerId, pool, conn, namespace, pod: podName(runnerId), startTimeoutMs, reported: false, gone, markGone };
      this.runners.set(runnerId, t);
    }
    return t;
  }

  /** Every change of a runner pod: report what ended or got stuck, delete it, and forget it when gone. */
  private onPod(conn: string, namespace: string, type: PodEvent, pod: V1Pod) {
    const labels = pod.metadata?.labels ?? {};
    const runnerId = labels[LABEL_RUNNER];
    if (!runnerId || this.closed) return;
    const t = this.track(runnerId, labels[LABEL_POOL] ?? '', conn, namespace, this.runners.get(runnerId)?.startTimeoutMs ?? 60_000);
    if (type === 'DELETED') {
      clearTimeout(t.timer);
      const verdict = this.judge(pod, t);
      this.report(t, verdict.kind === 'terminating' || verdict.kind === 'ended' ? verdict.detail : `pod ${t.pod} was deleted`);
      this.runners.delete(runnerId);
      t.markGone();
      return;
    }
    const verdict = this.judge(pod, t);
    if (verdict.kind === 'ended' || verdict.kind === 'stuck') {
      clearTimeout(t.timer);
      if (verdict.kind === 'stuck') this.opts.log.warn({ runnerId, pod: t.pod, namespace, reason: verdict.reason }, 'runner pod stuck; deleting it');
      this.report(t, verdict.detail);
      void this.deletePod(t, 0).catch((err) => this.opts.log.warn({ err, runnerId }, 'could not delete an ended runner pod'));
    } else if (verdict.kind === 'starting' && !t.timer && this.dueAt(pod, t) > this.now()) {
      // look again when the start timeout passes (an unschedulable pod gets no event by then)
      t.timer = setTimeout(() => {
        t.timer = undefined;
        const cur = this.watches.get(`${conn}|${namespace}`)?.pods.get(t.pod);
        if (cur && this.runners.get(runnerId) === t) this.onPod(conn, namespace, 'MODIFIED', cur);
      }, this.dueAt(pod, t) - this.now() + 50);
      t.timer.unref?.();
    } else if (verdict.kind === 'running') {
      clearTimeout(t.timer);
      t.timer = undefined;
    }
  }

  private judge(pod: V1Pod, t: Tracked) {
    return judgePod(pod, this.now(), { startTimeoutMs: t.startTimeoutMs, settleMs: this.opts.settleMs ?? 10_000 });
  }

  /** When a pending pod is judged again: where an unschedulable one counts as stuck. */
  private dueAt(pod: V1Pod, t: Tracked): number {
    const created = new Date(pod.metadata?.creationTimestamp as unknown as string).getTime() || this.now();
    return created + unschedulableAfter(t.startTimeoutMs);
  }

  private report(t: Tracked, detail: string) {
    if (t.reported) return;
    t.reported = true;
    this.opts.log.info({ runnerId: t.runnerId, pod: t.pod, namespace: t.namespace, detail }, 'runner pod ended');
    for (const l of this.listeners) l(t.runnerId, detail);
  }

  private async deletePod(t: Tracked, graceSeconds: number) {
    const client = this.clients.get(t.conn)!;
    try {
      await client.call('delete pod', `delete pod ${t.namespace}/${t.pod}`, () =>
        client.api.deleteNamespacedPod({ name: t.pod, namespace: t.namespace, gracePeriodSeconds: graceSeconds, propagationPolicy: 'Background' }),
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
      // already gone: the watch's DELETED (or the relist) forgets it
    }
  }

  create(spec: LaunchSpec): Promise<{ ref: string }> {
    return this.createMany([spec])[0]!;
  }

  /**
   * Launches runners together: one Secret with all their registration tokens first, then every
   * Pod at once (each through the token bucket), then one patch making the Pods the Secret's
   * owners (the garbage collector deletes it with the last of them). A Pod never waits for its
   * token (a kubelet that finds a Secret missing retries only after its ~10 s backoff), and a
   * burst costs one call per runner plus two. Each runner fails on its own; a refused Secret
   * fails them all.
   */
  createMany(specs: LaunchSpec[]): Promise<{ ref: string }>[] {
    const groups = new Map<string, LaunchSpec[]>();
    for (const spec of specs) {
      const k = kubernetesFieldsOf(spec.pool);
      const key = `${connectionKey(k)}|${k.namespace}`;
      groups.set(key, [...(groups.get(key) ?? []), spec]);
    }
    const out = new Map<string, Promise<{ ref: string }>>();
    for (const group of groups.values())
      for (let i = 0; i < group.length; i += LAUNCH_MAX) {
        const launch = group.slice(i, i + LAUNCH_MAX);
        const results = this.launch(launch);
        launch.forEach((spec, j) => out.set(spec.runnerId, results[j]!));
      }
    return specs.map((s) => out.get(s.runnerId)!);
  }

  /** One launch: runners of one connection and namespace. */
  private launch(launch: LaunchSpec[]): Promise<{ ref: string }>[] {
    const k = kubernetesFieldsOf(launch[0]!.pool);
    const client = this.clientFor(k);
    const conn = connectionKey(k);
    this.watchFor(conn, k.namespace);
    const secretBody = buildSecret(launch, this.owner);
    const secretName = secretBody.metadata!.name!;
    const secret = (async () => {
      try {
        await client.call('create secret', `create secret ${k.namespace}/${secretName}`, () => client.api.createNamespacedSecret({ namespace: k.namespace, body: secretBody }));
      } catch (err) {
        if (!isConflict(err)) throw this.configError(launch[0]!, err, 'secret'); // 409: a retried launch, it is there
      }
    })();
    const pods = launch.map(async (spec) => {
      await secret;
      if (!spec.pool.image) throw new KubeApiError(`pool ${spec.pool.name} has no image: the kubernetes provider needs one`, 422, 'Invalid', 'image');
      const t = this.track(spec.runnerId, spec.pool.name, conn, k.namespace, spec.pool.startTimeout);
      const pod = buildPod(spec, { owner: this.owner, graceSeconds: Math.ceil(this.opts.stopGraceMs / 1000), token: tokenRef(launch, spec.runnerId) });
      try {
        const made = await client.call('create pod', `create pod ${k.namespace}/${t.pod}`, () => client.api.createNamespacedPod({ namespace: k.namespace, body: pod }));
        return { spec, t, uid: made.metadata!.uid! };
      } catch (err) {
        if (!isConflict(err)) {
          this.runners.delete(spec.runnerId);
          throw this.configError(spec, err);
        }
        // 409: a retried create; the pod is already there
        const existing = await client.call('read pod', `read pod ${k.namespace}/${t.pod}`, () => client.api.readNamespacedPod({ name: t.pod, namespace: k.namespace }));
        return { spec, t, uid: existing.metadata!.uid! };
      }
    });
    // the Pods own the Secret: it goes with the last of them (none made: it goes now)
    const owned = secret.then(
      () => Promise.allSettled(pods).then((settled) => this.handOver(client, k.namespace, secretName, settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])))),
      () => {}, // refused: every pod of the launch fails with its error
    );
    return pods.map(async (pod) => {
      const { spec, t } = await pod;
      await owned;
      this.opts.log.info({ runnerId: spec.runnerId, pod: t.pod, namespace: k.namespace, image: spec.dynamic?.image ?? spec.pool.image, server: client.server, launch: launch.length }, 'runner pod created');
      return { ref: this.ref(k.namespace, t.pod) };
    });
  }

  /** Makes the launch's pods the owners of its Secret (one patch), or deletes it when none was made. */
  private async handOver(client: KubeClient, namespace: string, secretName: string, made: { spec: LaunchSpec; uid: string }[]) {
    try {
      if (!made.length) {
        await client.call('delete secret', `delete secret ${namespace}/${secretName}`, () => client.api.deleteNamespacedSecret({ name: secretName, namespace }));
        return;
      }
      const ownerReferences = secretOwners(made.map((m) => ({ runnerId: m.spec.runnerId, uid: m.uid })));
      await client.call('patch secret', `patch secret ${namespace}/${secretName}`, () =>
        client.api.patchNamespacedSecret({ name: secretName, namespace, body: { metadata: { ownerReferences } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch)),
      );
    } catch (err) {
      if (!isNotFound(err)) this.opts.log.warn({ err, secret: secretName, namespace }, 'could not hand the launch secret to its pods; it stays until deleted');
    }
  }

  /** 422 is the pool's fault: say which field the API named, and which pool to fix. */
  private configError(spec: LaunchSpec, err: unknown, what = 'pod'): Error {
    const e = err as KubeApiError;
    if (e?.code === 422) return new KubeApiError(`pool ${spec.pool.name}: the kubernetes API rejected its ${what}${e.field ? ` (field ${e.field})` : ''}; fix the pool's kubernetes block or image: ${e.message}`, 422, 'Invalid', e.field, false, { cause: err });
    return e;
  }

  /** No build on Kubernetes: the base runs as it is, with the agent copied in by an init container. */
  async prepareImage(req: ImageRequest): Promise<{ image: string; built: boolean }> {
    return { image: req.base, built: false };
  }

  private ref(namespace: string, pod: string) {
    return `kubernetes:${namespace}/${pod}@${this.owner}`;
  }

  /** The runner pods of this instance, from the watch caches (waits for their first list). */
  async list(): Promise<ProviderRunner[]> {
    const out: ProviderRunner[] = [];
    for (const w of this.watches.values()) {
      await w.synced(this.opts.syncTimeoutMs);
      for (const pod of w.pods.values()) {
        const runnerId = pod.metadata?.labels?.[LABEL_RUNNER];
        if (!runnerId) continue;
        const t = this.runners.get(runnerId);
        const phase = pod.status?.phase;
        const alive = !t?.reported && phase !== 'Succeeded' && phase !== 'Failed';
        out.push({ runnerId, ref: this.ref(w.namespace, pod.metadata!.name!), pool: pod.metadata?.labels?.[LABEL_POOL] ?? '', alive, startedAt: new Date(pod.metadata?.creationTimestamp as unknown as string).getTime() });
      }
    }
    return out;
  }

  async describe(runnerId: string): Promise<ProviderRunner | undefined> {
    return (await this.list()).find((r) => r.runnerId === runnerId);
  }

  /**
   * The scheduler has asked the agent to drain through its control channel; this deletes the pod
   * with the grace (the kubelet sends SIGTERM, then SIGKILL) and waits until it is gone. The
   * Secret goes with it (ownerReference). "Already gone" is success.
   */
  async terminate(runnerId: string, opts: { graceMs: number }): Promise<void> {
    let t = this.runners.get(runnerId);
    if (!t) {
      for (const w of this.watches.values()) {
        await w.synced(this.opts.syncTimeoutMs);
        const pod = w.pods.get(podName(runnerId));
        if (pod) {
          const [conn] = [...this.watches.entries()].find(([, v]) => v === w)![0].split('|');
          t = this.track(runnerId, pod.metadata?.labels?.[LABEL_POOL] ?? '', conn!, w.namespace, 60_000);
        }
      }
    }
    if (!t) return;
    await this.deletePod(t, Math.max(0, Math.ceil(opts.graceMs / 1000)));
    const w = this.watches.get(`${t.conn}|${t.namespace}`);
    if (!w?.pods.has(t.pod)) {
      // gone before the watch saw it again: nothing will come
      this.runners.delete(runnerId);
      t.markGone();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([t.gone, new Promise<void>((ok) => (timer = setTimeout(ok, opts.graceMs + DELETE_SLACK_MS)))]);
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    // Pods outlive the control plane: a restart adopts them. Only stop watching.
    this.closed = true;
    for (const t of this.runners.values()) clearTimeout(t.timer);
    await Promise.all([...this.watches.values()].map((w) => w.close()));
  }
}
