/*
 * A Kubernetes API server on loopback, for tests: the part of the core/v1 API runyard and
 * kubectl use, answered as the kube-apiserver answers it. Discovery (/version, /api, /api/v1,
 * /apis); pods, secrets and events with create/get/list/watch/patch/put/delete, label and field
 * selectors; one monotonic resourceVersion with a bounded history (a watch from before it gets
 * an ERROR event with a 410 Expired Status); bookmarks; timeoutSeconds; graceful pod deletion
 * (deletionTimestamp, MODIFIED, containers stopped with the grace, then DELETED); garbage
 * collection of objects owned by a deleted one; eviction; Status bodies for every error. Every
 * object a client creates or replaces is validated with kubernetes-models (422 naming the field).
 * Pods really run: see pod-runner.ts. Fault switches make it misbehave as real clusters do.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import Docker from 'dockerode';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { ObjectStore, parseFieldSelector, parseLabelSelector, SelectorError, type Change, type KubeObject } from './object-store.js';
import { PodRunner, type Faults } from './pod-runner.js';
import * as S from './status.js';

const RESOURCES: Record<string, { kind: string; validate?: (o: unknown) => void; verbs: string[] }> = {
  pods: { kind: 'Pod', validate: (o) => new Pod(o as any).validate(), verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] },
  secrets: { kind: 'Secret', validate: (o) => new Secret(o as any).validate(), verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] },
  events: { kind: 'Event', verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] },
};
const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export interface FakeKubeOptions {
  /** podman's Docker-compatible API (unix:///…sock), where pods' containers run. */
  dockerHost: string;
  /** How many changes a watch can replay from (default 500). */
  historySize?: number;
  /** Interval of bookmarks on watches that allow them (default 1 s). */
  bookmarkMs?: number;
  /** Interval of readiness probes, whatever the pod says (default 200 ms: tests wait on it). */
  probeMs?: number;
}

export interface ApiCall {
  method: string;
  path: string;
  resource?: string;
  watch: boolean;
  status: number;
  userAgent?: string;
}

export class FakeKube {
  readonly store: ObjectStore;
  readonly faults: Faults = { unschedulable: false, errImagePull: false, slowStartMs: 0 };
  readonly calls: ApiCall[] = [];
  /** Objects a client sent that the API would not accept (validation errors), for tests to assert none. */
  readonly rejected: { resource: string; name: string; errors: string }[] = [];
  readonly token = `fake-kube-${randomBytes(12).toString('hex')}`;
  readonly id = randomBytes(6).toString('hex');
  url = '';
  private http: Server;
  private docker: Docker;
  private runner: PodRunner;
  private watches = new Set<{ res: ServerResponse; end: (event?: unknown) => void }>();
  private sockets = new Set<Socket>();
  private throttleLeft = 0;
  private throttleSeconds = 1;
  private quotaLeft = 0;
  private deleting = new Map<string, Promise<void>>();

  constructor(private opts: FakeKubeOptions) {
    this.store = new ObjectStore(opts.historySize ?? 500);
    const socketPath = opts.dockerHost.replace(/^unix:\/\//, '');
    this.docker = new Docker({ socketPath });
    this.runner = new PodRunner(this.docker, this.store, this.faults, { serverId: this.id, probeMs: opts.probeMs ?? 200, event: (pod, reason, message, type) => this.event(pod, reason, message, type) });
    this.http = createServer((req, res) => void this.handle(req, res));
    this.http.on('connection', (s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((ok) => this.http.listen(0, '127.0.0.1', ok));
    this.url = `http://127.0.0.1:${(this.http.address() as AddressInfo).port}`;
    return this;
  }

  /** A kubeconfig file for this server (client-node and kubectl read it). */
  writeKubeconfig(path: string, context = 'fake'): string {
    writeFileSync(
      path,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'fake', user: { token: this.token } }],
        contexts: [{ name: context, context: { cluster: 'fake', user: 'fake', namespace: 'default' } }],
        'current-context': context,
      }),
    );
    return path;
  }

  // ---- fault switches -------------------------------------------------------------------

  /** Cuts every open watch connection abruptly (a load balancer dropping it). */
  dropWatches() {
    for (const w of this.watches) w.res.socket?.destroy();
  }
  /** Compacts the history and ends every watch with ERROR 410: clients must relist. */
  expireWatches() {
    this.store.compact();
    for (const w of this.watches) w.end({ type: 'ERROR', object: S.expired('0', this.store.resourceVersion) });
  }
  /** The next `n` requests get 429 with Retry-After. */
  throttle(n: number, retryAfterSeconds = 1) {
    this.throttleLeft = n;
    this.throttleSeconds = retryAfterSeconds;
  }
  /** The next `n` pod creates are refused: 403 exceeded quota. */
  exhaustQuota(n: number) {
    this.quotaLeft = n;
  }
  /** Evicts every pod (a node drain): each is deleted gracefully, as the eviction API does. */
  async drainNode() {
    await Promise.all(this.store.list('pods').map((p) => this.deletePod(p, undefined, true)));
  }

  /** Pods (or secrets) whose labels match, as a client would list them. */
  objects(resource: string, selector?: string): KubeObject[] {
    const match = parseLabelSelector(selector);
    return this.store.list(resource).filter((o) => match(o.metadata.labels));
  }

  async close() {
    for (const w of this.watches) w.res.destroy();
    await this.runner.close();
    await Promise.allSettled(this.deleting.values());
    await new Promise<void>((ok) => {
      this.http.close(() => ok());
      this.http.closeAllConnections();
    });
    // containers left by a pod whose deletion never came
    const left = await this.docker.listContainers({ all: true, filters: { label: [`fake-kube.server=${this.id}`] } }).catch(() => []);
    for (const c of left) await this.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => {});
  }

  // ---- request handling -----------------------------------------------------------------

  private send(res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}) {
    res.writeHead(code, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  private async body(req: IncomingMessage): Promise<any> {
    let text = '';
    for await (const chunk of req) text += chunk;
    if (!text) return undefined;
    return JSON.parse(text);
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://x');
    const q = url.searchParams;
    const watch = q.get('watch') === 'true' || q.get('watch') === '1';
    const call: ApiCall = { method: req.method ?? 'GET', path: url.pathname, watch, status: 0, userAgent: req.headers['user-agent'] };
    this.calls.push(call);
    res.once('finish', () => (call.status = res.statusCode));
    res.once('close', () => (call.status ||= res.statusCode));
    try {
      // kubectl sends no bearer token over plain http (as the apiserver's old insecure port took none); a wrong one is refused
      if (req.headers.authorization !== undefined && req.headers.authorization !== `Bearer ${this.token}`) return this.send(res, 401, S.unauthorized());
      if (this.throttleLeft > 0) {
        this.throttleLeft -= 1;
        return this.send(res, 429, S.tooManyRequests(this.throttleSeconds), { 'retry-after': String(this.throttleSeconds) });
      }
      const p = url.pathname.replace(/\/+$/, '');
      if (p === '/version') return this.send(res, 200, { major: '1', minor: '32', gitVersion: 'v1.32.0-fake', gitCommit: 'fake', gitTreeState: 'clean', buildDate: '2026-01-01T00:00:00Z', goVersion: 'go1.23', compiler: 'gc', platform: 'linux/amd64' });
      if (p === '/api') return this.send(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: url.host }] });
      if (p === '/apis') return this.send(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups: [] });
      if (p === '/api/v1') return this.send(res, 200, this.discovery());
      let m = p.match(/^\/api\/v1\/(pods|secrets|events)$/);
      if (m && req.method === 'GET') return this.listOrWatch(req, res, m[1]!, undefined, q, watch);
      m = p.match(/^\/api\/v1\/namespaces\/([^/]+)\/(pods|secrets|events)(?:\/([^/]+)(?:\/(eviction|status))?)?$/);
      if (!m) return this.send(res, 404, S.status(404, 'NotFound', 'the server could not find the requested resource'));
      const [, ns, resource, name, sub] = m as unknown as [string, string, string, string | undefined, string | undefined];
      if (!name) {
        if (req.method === 'GET') return this.listOrWatch(req, res, resource, ns, q, watch);
        if (req.method === 'POST') return this.create(res, resource, ns, await this.body(req));
        return this.send(res, 405, S.status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
      }
      if (sub === 'eviction' && resource === 'pods' && req.method === 'POST') return this.evict(res, ns, name, await this.body(req));
      if (sub === 'status' && req.method === 'GET') return this.get(res, resource, ns, name);
      if (req.method === 'GET') return this.get(res, resource, ns, name);
      if (req.method === 'DELETE') return this.delete(res, resource, ns, name, (await this.body(req)) ?? {}, q);
      if (req.method === 'PATCH') return this.patch(res, resource, ns, name, String(req.headers['content-type'] ?? ''), await this.body(req));
      if (req.method === 'PUT') return this.replace(res, resource, ns, name, await this.body(req));
      return this.send(res, 405, S.status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'));
    } catch (err) {
      if (err instanceof SelectorError) return this.send(res, 400, S.status(400, 'BadRequest', err.message));
      if (err instanceof SyntaxError) return this.send(res, 400, S.status(400, 'BadRequest', `the object provided is unrecognized: ${err.message}`));
      if (!res.headersSent) this.send(res, 500, S.status(500, 'InternalError', String((err as Error)?.message ?? err)));
    }
  }

  private discovery() {
    const r = (name: string, kind: string, verbs: string[], namespaced = true) => ({ name, singularName: name === kind.toLowerCase() + 's' ? kind.toLowerCase() : '', namespaced, kind, verbs });
    return {
      kind: 'APIResourceList',
      groupVersion: 'v1',
      resources: [
        { ...r('pods', 'Pod', RESOURCES.pods!.verbs), shortNames: ['po'], categories: ['all'] },
        r('pods/eviction', 'Eviction', ['create']),
        r('pods/log', 'Pod', ['get']),
        r('pods/status', 'Pod', ['get', 'patch', 'update']),
        r('secrets', 'Secret', RESOURCES.secrets!.verbs),
        { ...r('events', 'Event', RESOURCES.events!.verbs), shortNames: ['ev'] },
      ],
    };
  }

  private listKind(resource: string) {
    return `${RESOURCES[resource]!.kind}List`;
  }

  private get(res: ServerResponse, resource: string, ns: string, name: string) {
    const o = this.store.get(resource, ns, name);
    if (!o) return this.send(res, 404, S.notFound(resource, name));
    this.send(res, 200, o);
  }

  private listOrWatch(req: IncomingMessage, res: ServerResponse, resource: string, ns: string | undefined, q: URLSearchParams, watch: boolean) {
    const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
    const fields = parseFieldSelector(q.get('fieldSelector') ?? undefined);
    const match = (o: KubeObject) => (!ns || o.metadata.namespace === ns) && labels(o.metadata.labels) && fields(o);
    if (!watch) {
      const items = this.store.list(resource, ns).filter(match);
      return this.send(res, 200, { kind: this.listKind(resource), apiVersion: 'v1', metadata: { resourceVersion: String(this.store.resourceVersion) }, items });
    }
    const rvText = q.get('resourceVersion');
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const write = (event: unknown) => res.write(JSON.stringify(event) + '\n');
    let ended = false;
    let unsubscribe = () => {};
    const timers: NodeJS.Timeout[] = [];
    const end = (event?: unknown) => {
      if (ended) return;
      ended = true;
      unsubscribe();
      for (const t of timers) clearTimeout(t);
      this.watches.delete(entry);
      if (event) write(event);
      res.end();
    };
    const entry = { res, end };
    this.watches.add(entry);
    res.once('close', () => end());
    const emit = (c: Change) => {
      if (match(c.object)) write({ type: c.type, object: c.object });
    };
    if (!rvText || rvText === '0') {
      // no version: the current state as ADDED events, then changes
      for (const o of this.store.list(resource, ns).filter(match)) write({ type: 'ADDED', object: o });
    } else {
      const replay = this.store.since(resource, Number(rvText));
      if (replay === 'expired') return end({ type: 'ERROR', object: S.expired(rvText, this.store.resourceVersion) });
      for (const c of replay) emit(c);
    }
    unsubscribe = this.store.subscribe(resource, emit);
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    if (timeout > 0) timers.push(setTimeout(() => end(), timeout * 1000));
    if (q.get('allowWatchBookmarks') === 'true') {
      const bookmark = () => {
        write({ type: 'BOOKMARK', object: { kind: RESOURCES[resource]!.kind, apiVersion: 'v1', metadata: { resourceVersion: String(this.store.resourceVersion) } } });
        timers.push(setTimeout(bookmark, this.opts.bookmarkMs ?? 1_000));
      };
      timers.push(setTimeout(bookmark, this.opts.bookmarkMs ?? 1_000));
    }
    void req;
  }

  /** Validation as the API server does it: names, then the schema. A failure is a 422 naming the field. */
  private validate(resource: string, obj: KubeObject): { field: string; message: string }[] {
    const causes: { field: string; message: string }[] = [];
    const name = obj?.metadata?.name ?? '';
    if (!name) causes.push({ field: 'metadata.name', message: 'Required value: name or generateName is required' });
    else if (!DNS1123.test(name) || name.length > 253)
      causes.push({ field: 'metadata.name', message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'` });
    try {
      RESOURCES[resource]!.validate?.(obj);
    } catch (err) {
      for (const e of (err as { errors?: { instancePath: string; message: string }[] }).errors ?? [{ instancePath: '', message: String((err as Error).message) }])
        causes.push({ field: e.instancePath.replace(/^\//, '').replace(/\//g, '.').replace(/\.(\d+)(?=\.|$)/g, '[$1]'), message: e.message });
    }
    if (resource === 'pods') {
      for (const [i, c] of (obj.spec?.containers ?? []).entries())
        for (const [k, v] of Object.entries({ ...c.resources?.limits, ...c.resources?.requests }))
          if (!/^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.test(String(v))) causes.push({ field: `spec.containers[${i}].resources.${k}`, message: `Invalid value: "${v}": must be a quantity` });
    }
    return causes;
  }

  private create(res: ServerResponse, resource: string, ns: string, obj: KubeObject) {
    if (obj?.metadata && !obj.metadata.name && obj.metadata.generateName) obj.metadata.name = obj.metadata.generateName + randomBytes(3).toString('hex').slice(0, 5);
    const kind = RESOURCES[resource]!.kind;
    if (obj?.metadata?.namespace && obj.metadata.namespace !== ns)
      return this.send(res, 400, S.status(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request'));
    const causes = this.validate(resource, obj);
    if (causes.length) {
      this.rejected.push({ resource, name: obj?.metadata?.name ?? '', errors: causes.map((c) => `${c.field}: ${c.message}`).join('; ') });
      return this.send(res, 422, S.invalid(kind, obj?.metadata?.name ?? '', causes));
    }
    obj.metadata.namespace = ns;
    obj.apiVersion = 'v1';
    obj.kind = kind;
    if (this.store.get(resource, ns, obj.metadata.name)) return this.send(res, 409, S.alreadyExists(resource, obj.metadata.name));
    if (resource === 'pods' && this.quotaLeft > 0) {
      this.quotaLeft -= 1;
      return this.send(res, 403, S.quotaExceeded(obj.metadata.name));
    }
    if (resource === 'secrets' && obj.stringData) {
      obj.data = { ...obj.data, ...Object.fromEntries(Object.entries(obj.stringData as Record<string, string>).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) };
      delete obj.stringData;
    }
    if (resource === 'pods') {
      obj.spec = { restartPolicy: 'Always', terminationGracePeriodSeconds: 30, dnsPolicy: 'ClusterFirst', schedulerName: 'default-scheduler', serviceAccountName: 'default', ...obj.spec };
      obj.status = { phase: 'Pending', qosClass: 'BestEffort' };
    }
    const stored = this.store.create(resource, obj, new Date());
    if (resource === 'pods') this.runner.run(stored);
    this.send(res, 201, stored);
  }

  private replace(res: ServerResponse, resource: string, ns: string, name: string, obj: KubeObject) {
    const cur = this.store.get(resource, ns, name);
    if (!cur) return this.send(res, 404, S.notFound(resource, name));
    if (obj?.metadata?.resourceVersion && obj.metadata.resourceVersion !== cur.metadata.resourceVersion) return this.send(res, 409, S.conflict(resource, name));
    const causes = this.validate(resource, obj);
    if (causes.length) return this.send(res, 422, S.invalid(RESOURCES[resource]!.kind, name, causes));
    obj.metadata = { ...obj.metadata, uid: cur.metadata.uid, creationTimestamp: cur.metadata.creationTimestamp, namespace: ns, name };
    if (resource === 'pods') obj.status = cur.status;
    this.send(res, 200, this.store.update(resource, obj));
  }

  private patch(res: ServerResponse, resource: string, ns: string, name: string, type: string, patch: any) {
    const cur = this.store.get(resource, ns, name);
    if (!cur) return this.send(res, 404, S.notFound(resource, name));
    if (!/merge-patch\+json|strategic-merge-patch\+json/.test(type))
      return this.send(res, 415, S.status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json`));
    const merged = mergePatch(cur, patch) as KubeObject;
    merged.metadata.uid = cur.metadata.uid;
    merged.metadata.name = name;
    const causes = this.validate(resource, merged);
    if (causes.length) return this.send(res, 422, S.invalid(RESOURCES[resource]!.kind, name, causes));
    this.send(res, 200, this.store.update(resource, merged));
    this.collectOrphan(resource, merged);
  }

  /** An object given owners that are all gone already is garbage too (the collector checks every owner it is told of). */
  private collectOrphan(resource: string, o: KubeObject) {
    const refs = o.metadata.ownerReferences;
    if (!refs?.length) return;
    const live = new Set<string>();
    for (const r of Object.keys(RESOURCES)) for (const x of this.store.list(r)) live.add(x.metadata.uid!);
    if (refs.some((r) => live.has(r.uid))) return;
    if (resource === 'pods') this.deletePod(o, undefined);
    else {
      this.store.remove(resource, o.metadata.namespace, o.metadata.name);
      this.collect(o.metadata.uid!);
    }
  }

  private evict(res: ServerResponse, ns: string, name: string, body: any) {
    const pod = this.store.get('pods', ns, name);
    if (!pod) return this.send(res, 404, S.notFound('pods', name));
    void this.deletePod(pod, body?.deleteOptions?.gracePeriodSeconds, true);
    this.send(res, 201, S.status(201, '', ''));
  }

  private async delete(res: ServerResponse, resource: string, ns: string, name: string, opts: { gracePeriodSeconds?: number; propagationPolicy?: string }, q: URLSearchParams) {
    const cur = this.store.get(resource, ns, name);
    if (!cur) return this.send(res, 404, S.notFound(resource, name));
    const grace = opts.gracePeriodSeconds ?? (q.has('gracePeriodSeconds') ? Number(q.get('gracePeriodSeconds')) : undefined);
    if (resource === 'pods') {
      const marked = this.deletePod(cur, grace);
      return this.send(res, 200, marked);
    }
    const gone = this.store.remove(resource, ns, name)!;
    this.collect(gone.metadata.uid!);
    this.send(res, 200, resource === 'secrets' ? S.status(200, '', '', { name, kind: resource }) : gone);
  }

  /**
   * Graceful deletion: the pod gets deletionTimestamp (MODIFIED), its containers SIGTERM and
   * then SIGKILL after the grace, then it goes (DELETED) and its dependents are collected.
   * An unscheduled pod goes at once, as the API server does with one no kubelet runs.
   */
  private deletePod(pod: KubeObject, graceSeconds: number | undefined, evicted = false): KubeObject {
    const uid = pod.metadata.uid!;
    if (this.deleting.has(uid)) return pod;
    if (evicted) {
      // as the eviction API marks a pod it disrupts (Kubernetes 1.26+)
      const ts = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      pod.status = { ...pod.status, conditions: [...(pod.status?.conditions ?? []).filter((c: any) => c.type !== 'DisruptionTarget'), { type: 'DisruptionTarget', status: 'True', reason: 'EvictionByEvictionAPI', message: 'Eviction API: evicting', lastProbeTime: null, lastTransitionTime: ts }] };
      this.event(pod, 'Killing', 'Stopping container agent (evicted)');
    }
    const grace = graceSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30;
    let marked = pod;
    if (evicted || (pod.spec.nodeName && grace > 0)) {
      pod.metadata.deletionTimestamp = new Date(Date.now() + grace * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
      pod.metadata.deletionGracePeriodSeconds = grace;
      marked = this.store.update('pods', pod);
    }
    const run = (async () => {
      await this.runner.kill(uid, grace);
      const cur = this.store.get('pods', pod.metadata.namespace, pod.metadata.name);
      if (cur?.metadata.uid === uid) this.store.remove('pods', pod.metadata.namespace, pod.metadata.name);
      this.collect(uid);
      this.deleting.delete(uid);
    })();
    this.deleting.set(uid, run);
    return marked;
  }

  /**
   * The garbage collector (background propagation): an object whose owners are all gone goes
   * too; one that still has an owner loses only its reference to the one that went.
   */
  private collect(ownerUid: string) {
    const live = new Set<string>();
    for (const resource of Object.keys(RESOURCES)) for (const o of this.store.list(resource)) live.add(o.metadata.uid!);
    for (const resource of Object.keys(RESOURCES))
      for (const o of this.store.list(resource)) {
        const refs = o.metadata.ownerReferences;
        if (!refs?.some((r) => r.uid === ownerUid)) continue;
        const left = refs.filter((r) => r.uid !== ownerUid && live.has(r.uid));
        if (left.length) {
          this.store.update(resource, { ...o, metadata: { ...o.metadata, ownerReferences: left } });
        } else if (resource === 'pods') this.deletePod(o, undefined);
        else {
          this.store.remove(resource, o.metadata.namespace, o.metadata.name);
          this.collect(o.metadata.uid!);
        }
      }
  }

  /** An Event about a pod, as the scheduler and kubelet record them (kubectl describe shows them). */
  private event(pod: KubeObject, reason: string, message: string, type = 'Normal') {
    const ts = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    this.store.create(
      'events',
      {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${pod.metadata.name}.${randomBytes(8).toString('hex')}`, namespace: pod.metadata.namespace },
        involvedObject: { kind: 'Pod', namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata.uid, apiVersion: 'v1' },
        reason,
        message,
        type,
        source: { component: reason === 'Scheduled' || reason === 'FailedScheduling' ? 'default-scheduler' : 'kubelet', host: 'fake-node-1' },
        firstTimestamp: ts,
        lastTimestamp: ts,
        count: 1,
        reportingComponent: 'kubelet',
        reportingInstance: 'fake-node-1',
      },
      new Date(),
    );
  }
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: any, patch: any): any {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out = target && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}
