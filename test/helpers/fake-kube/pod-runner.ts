/*
 * The fake's kubelet: runs a Pod's containers as podman containers (init containers first, one
 * after the other, then the rest), with host networking and a loopback address of its own as the
 * pod IP (127.0.x.y), so an agent inside reaches a server on 127.0.0.1 and its probes answer on
 * the pod IP. The containers' states become phase, conditions and containerStatuses as the
 * kubelet reports them; readiness probes are really run (httpGet).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import Docker from 'dockerode';
import type { KubeObject, ObjectStore } from './object-store.js';

export interface Faults {
  /** New pods stay Pending with PodScheduled=False, reason Unschedulable. */
  unschedulable: boolean;
  /** Image pulls fail: ErrImagePull, then ImagePullBackOff. */
  errImagePull: boolean;
  /** Extra time before a scheduled pod's containers start. */
  slowStartMs: number;
}

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** cpu `500m`/`1.5` to nano-cpus; memory `256Mi`/`1Gi`/`1000000` to bytes. */
export function quantity(q: string | number | undefined, kind: 'cpu' | 'memory'): number | undefined {
  if (q === undefined) return undefined;
  const m = String(q).match(/^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? '';
  if (kind === 'cpu') return Math.round((unit === 'm' ? n / 1000 : n) * 1e9);
  const mult: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Math.round(n * (mult[unit] ?? 1));
}

/** Kubernetes' `$(VAR)` expansion in command, args and env values; `$$` escapes. */
function expand(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, name) => (all === '$$' ? '$' : name in env ? env[name]! : all));
}

class ConfigError extends Error {}

interface Running {
  aborted: boolean;
  containers: Docker.Container[];
  dirs: string[];
  done: Promise<void>;
}

export class PodRunner {
  private pods = new Map<string, Running>();
  private nextIp = 2;

  constructor(
    private docker: Docker,
    private store: ObjectStore,
    private faults: Faults,
    private opts: { serverId: string; probeMs: number; event: (pod: KubeObject, reason: string, message: string, type?: string) => void },
  ) {}

  /** Starts a freshly created pod in the background. */
  run(pod: KubeObject) {
    const r: Running = { aborted: false, containers: [], dirs: [], done: Promise.resolve() };
    this.pods.set(pod.metadata.uid!, r);
    r.done = this.lifecycle(pod, r).catch((err) => {
      if (!r.aborted) this.patchStatus(pod, (s) => ({ ...s, phase: 'Failed', reason: 'FakeKubeletError', message: String(err?.message ?? err) }));
    });
  }

  /** Re-reads the pod and replaces its status; nothing when it is gone or being torn down. */
  private patchStatus(pod: KubeObject, fn: (status: any) => any): KubeObject | undefined {
    const cur = this.store.get('pods', pod.metadata.namespace, pod.metadata.name);
    if (!cur || cur.metadata.uid !== pod.metadata.uid) return undefined;
    cur.status = fn(cur.status ?? {});
    return this.store.update('pods', cur);
  }

  private setCondition(status: any, type: string, value: boolean, extra: Record<string, string> = {}) {
    const conditions = (status.conditions ?? []).filter((c: any) => c.type !== type);
    conditions.push({ type, status: value ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: now(), ...extra });
    return { ...status, conditions };
  }

  private async lifecycle(pod: KubeObject, r: Running) {
    const spec = pod.spec;
    if (this.faults.unschedulable) {
      this.patchStatus(pod, (s) => this.setCondition({ ...s, phase: 'Pending', qosClass: 'Burstable' }, 'PodScheduled', false, { reason: 'Unschedulable', message: '0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.' }));
      this.opts.event(pod, 'FailedScheduling', '0/1 nodes are available: 1 Insufficient cpu.', 'Warning');
      return;
    }
    const podIP = `127.0.${Math.floor(this.nextIp / 250)}.${(this.nextIp++ % 250) + 2}`;
    const node = 'fake-node-1';
    const cur = this.store.get('pods', pod.metadata.namespace, pod.metadata.name);
    if (!cur) return;
    cur.spec.nodeName = node;
    this.store.update('pods', cur);
    this.opts.event(pod, 'Scheduled', `Successfully assigned ${pod.metadata.namespace}/${pod.metadata.name} to ${node}`);
    const waiting = (c: any, reason: string, message?: string) => ({ name: c.name, image: c.image, imageID: '', ready: false, restartCount: 0, started: false, state: { waiting: { reason, ...(message ? { message } : {}) } } });
    this.patchStatus(pod, (s) =>
      this.setCondition(
        {
          ...s,
          phase: 'Pending',
          hostIP: '127.0.0.1',
          podIP,
          podIPs: [{ ip: podIP }],
          startTime: now(),
          qosClass: 'Burstable',
          ...(spec.initContainers?.length ? { initContainerStatuses: spec.initContainers.map((c: any) => waiting(c, 'PodInitializing')) } : {}),
          containerStatuses: spec.containers.map((c: any) => waiting(c, spec.initContainers?.length ? 'PodInitializing' : 'ContainerCreating')),
        },
        'PodScheduled',
        true,
      ),
    );
    if (this.faults.slowStartMs) await new Promise((ok) => setTimeout(ok, this.faults.slowStartMs));
    if (r.aborted) return;

    const volumes = new Map<string, string>();
    for (const v of spec.volumes ?? []) {
      if (v.emptyDir) {
        const dir = mkdtempSync(join(tmpdir(), 'fake-kube-emptydir-'));
        r.dirs.push(dir);
        volumes.set(v.name, dir);
      }
    }
    const all = [...(spec.initContainers ?? []).map((c: any) => ({ c, init: true })), ...spec.containers.map((c: any) => ({ c, init: false }))];
    for (const { c, init } of all) {
      const missing = this.faults.errImagePull || !(await this.hasImage(c.image));
      if (missing) {
        const msg = `Failed to pull image "${c.image}": rpc error: code = NotFound desc = failed to pull and unpack image "${c.image}": not found`;
        this.setWaiting(pod, c.name, init, 'ErrImagePull', msg);
        this.opts.event(pod, 'Failed', msg, 'Warning');
        await new Promise((ok) => setTimeout(ok, this.opts.probeMs * 2));
        if (r.aborted) return;
        this.setWaiting(pod, c.name, init, 'ImagePullBackOff', `Back-off pulling image "${c.image}"`);
        this.opts.event(pod, 'BackOff', `Back-off pulling image "${c.image}"`, 'Warning');
        return;
      }
    }

    const started = new Map<string, Promise<number>>();
    for (const { c, init } of all) {
      if (r.aborted) return;
      let container: Docker.Container | undefined;
      // a missing Secret is retried, as the kubelet does: it may be created just after its Pod
      for (let reported = false; !container; ) {
        try {
          container = await this.createContainer(pod, c, podIP, node, volumes);
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          if (!reported) {
            this.setWaiting(pod, c.name, init, 'CreateContainerConfigError', err.message);
            this.opts.event(pod, 'Failed', `Error: ${err.message}`, 'Warning');
            reported = true;
          }
          await new Promise((ok) => setTimeout(ok, this.opts.probeMs));
          if (r.aborted) return;
        }
      }
      r.containers.push(container);
      if (r.aborted) return;
      await container.start();
      this.opts.event(pod, 'Started', `Started container ${c.name}`);
      const startedAt = now();
      this.setState(pod, c.name, init, { running: { startedAt } }, false);
      const exit = container.wait().then((w: { StatusCode: number }) => w.StatusCode);
      if (init) {
        const code = await exit;
        if (r.aborted) return;
        this.setState(pod, c.name, init, { terminated: { exitCode: code, reason: code === 0 ? 'Completed' : 'Error', startedAt, finishedAt: now() } }, false);
        if (code !== 0) {
          this.patchStatus(pod, (s) => ({ ...s, phase: 'Failed' }));
          return;
        }
        continue;
      }
      started.set(c.name, exit.then((code) => {
        if (!r.aborted) this.setState(pod, c.name, false, { terminated: { exitCode: code, reason: code === 0 ? 'Completed' : 'Error', startedAt, finishedAt: now() } }, false);
        return code;
      }));
    }
    this.patchStatus(pod, (s) => this.setCondition(this.setCondition({ ...s, phase: 'Running' }, 'Initialized', true), 'ContainersReady', false, { reason: 'ContainersNotReady' }));
    const probing = this.probe(pod, podIP, r);
    const codes = await Promise.all(started.values());
    r.aborted ||= false;
    await probing.stop();
    if (r.aborted) return;
    this.patchStatus(pod, (s) => this.setCondition(this.setCondition({ ...s, phase: codes.every((c) => c === 0) ? 'Succeeded' : 'Failed' }, 'Ready', false, { reason: 'PodCompleted' }), 'ContainersReady', false, { reason: 'PodCompleted' }));
  }

  /** Readiness probes (httpGet on the pod IP) every probeMs: Ready and ContainersReady follow them. */
  private probe(pod: KubeObject, podIP: string, r: Running) {
    let stopped = false;
    let ready: boolean | undefined;
    const loop = (async () => {
      while (!stopped && !r.aborted) {
        const results = await Promise.all(
          pod.spec.containers.map(async (c: any) => {
            const get = c.readinessProbe?.httpGet;
            if (!get) return true;
            return httpOk(podIP, Number(get.port), get.path ?? '/');
          }),
        );
        const now = results.every(Boolean);
        if (now !== ready && !stopped && !r.aborted) {
          ready = now;
          this.patchStatus(pod, (s) => {
            let st = this.setCondition(this.setCondition(s, 'ContainersReady', now, now ? {} : { reason: 'ContainersNotReady' }), 'Ready', now, now ? {} : { reason: 'ContainersNotReady' });
            st = { ...st, containerStatuses: st.containerStatuses.map((cs: any, i: number) => ({ ...cs, ready: cs.state.running ? results[i] : false })) };
            return st;
          });
        }
        await new Promise((ok) => setTimeout(ok, this.opts.probeMs));
      }
    })();
    return { stop: async () => { stopped = true; await loop; } };
  }

  private setWaiting(pod: KubeObject, name: string, init: boolean, reason: string, message: string) {
    this.setState(pod, name, init, { waiting: { reason, message } }, false);
  }

  private setState(pod: KubeObject, name: string, init: boolean, state: any, ready: boolean) {
    const key = init ? 'initContainerStatuses' : 'containerStatuses';
    this.patchStatus(pod, (s) => ({
      ...s,
      [key]: (s[key] ?? []).map((cs: any) => (cs.name === name ? { ...cs, state, ready, started: !!state.running, ...(state.running || state.terminated ? { imageID: `docker-pullable://${cs.image}`, containerID: 'containerd://fake' } : {}) } : cs)),
    }));
  }

  private async hasImage(image: string): Promise<boolean> {
    try {
      await this.docker.getImage(image).inspect();
      return true;
    } catch {
      return false;
    }
  }

  private async createContainer(pod: KubeObject, c: any, podIP: string, node: string, volumes: Map<string, string>): Promise<Docker.Container> {
    const env: Record<string, string> = {};
    for (const e of c.env ?? []) {
      if (e.value !== undefined) env[e.name] = expand(String(e.value), env);
      else if (e.valueFrom?.secretKeyRef) {
        const ref = e.valueFrom.secretKeyRef;
        const secret = this.store.get('secrets', pod.metadata.namespace, ref.name);
        if (!secret) throw new ConfigError(`secret "${ref.name}" not found`);
        const v = secret.data?.[ref.key];
        if (v === undefined) throw new ConfigError(`couldn't find key ${ref.key} in Secret ${pod.metadata.namespace}/${ref.name}`);
        env[e.name] = Buffer.from(v, 'base64').toString('utf8');
      } else if (e.valueFrom?.fieldRef) {
        const fields: Record<string, string> = {
          'metadata.name': pod.metadata.name,
          'metadata.namespace': pod.metadata.namespace ?? 'default',
          'metadata.uid': pod.metadata.uid!,
          'spec.nodeName': node,
          'spec.serviceAccountName': pod.spec.serviceAccountName ?? 'default',
          'status.podIP': podIP,
          'status.hostIP': '127.0.0.1',
        };
        const v = fields[e.valueFrom.fieldRef.fieldPath];
        if (v === undefined) throw new ConfigError(`unsupported fieldPath ${e.valueFrom.fieldRef.fieldPath}`);
        env[e.name] = v;
      }
    }
    const binds = (c.volumeMounts ?? []).map((m: any) => {
      const dir = volumes.get(m.name);
      if (!dir) throw new ConfigError(`volume ${m.name} not found`);
      return `${dir}:${m.mountPath}${m.readOnly ? ':ro' : ''}`;
    });
    const limits = c.resources?.limits ?? {};
    const memory = quantity(limits.memory, 'memory');
    return this.docker.createContainer({
      name: `fk-${pod.metadata.uid!.slice(0, 8)}-${c.name}`,
      Image: c.image,
      ...(c.command ? { Entrypoint: c.command.map((s: string) => expand(s, env)) } : {}),
      ...(c.args ? { Cmd: c.args.map((s: string) => expand(s, env)) } : {}),
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      WorkingDir: c.workingDir,
      Labels: { 'fake-kube.server': this.opts.serverId, 'fake-kube.pod': pod.metadata.uid!, 'fake-kube.pod-name': pod.metadata.name },
      HostConfig: {
        NetworkMode: 'host',
        Init: true,
        Binds: binds,
        Ulimits: [
          { Name: 'nofile', Soft: 20000, Hard: 20000 },
          { Name: 'nproc', Soft: 1000, Hard: 1000 },
        ],
        ...(limits.cpu ? { NanoCpus: quantity(limits.cpu, 'cpu') } : {}),
        ...(memory ? { Memory: memory, MemorySwap: memory } : {}),
      },
    });
  }

  /** Stops the pod's containers (SIGTERM, SIGKILL after `graceSeconds`) and removes them and its volumes. */
  async kill(uid: string, graceSeconds: number): Promise<void> {
    const r = this.pods.get(uid);
    if (!r) return;
    r.aborted = true;
    await Promise.all(
      r.containers.map(async (c) => {
        await c.stop({ t: graceSeconds }).catch(() => {});
        await c.remove({ force: true, v: true }).catch(() => {});
      }),
    );
    // a container being created while we stopped: take it too
    await r.done.catch(() => {});
    for (const c of r.containers) await c.remove({ force: true, v: true }).catch(() => {});
    for (const d of r.dirs) rmSync(d, { recursive: true, force: true });
    this.pods.delete(uid);
  }

  async close() {
    await Promise.all([...this.pods.keys()].map((uid) => this.kill(uid, 0)));
  }
}

function httpOk(host: string, port: number, path: string): Promise<boolean> {
  return new Promise((ok) => {
    const req = request({ host, port, path, timeout: 1_000 }, (res) => {
      res.resume();
      ok((res.statusCode ?? 500) >= 200 && (res.statusCode ?? 500) < 400);
    });
    req.on('error', () => ok(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}
