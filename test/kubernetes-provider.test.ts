/*
 * The kubernetes provider against a fake Kubernetes API server on loopback whose pods run as real
 * podman containers (test/helpers/fake-kube): the real client-node, the real kubectl, every
 * object validated with kubernetes-models. The provider contract, runners under the scheduler,
 * kill -9 of the control plane, and one test per fault switch. After every test no pod or
 * secret is left: asserted.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { providerContract } from './helpers/provider-contract.js';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { buildBaseImage, startPodman } from './helpers/podman.js';
import { startFakeCluster } from './helpers/fake-kube/index.js';
import { ServerProcess, freePort } from './helpers/process-server.js';
import { createPgDatabase } from './helpers/db.js';
import { KubernetesProvider } from '../src/providers/kubernetes/kubernetes-provider.js';
import { KubeApiError } from '../src/providers/kubernetes/kube-errors.js';
import { silentLogger } from '../src/lib/logger.js';
import { poolSchema } from '../src/config/schema.js';
import type { LaunchSpec } from '../src/providers/provider.js';
import { apiCallsMetric } from './helpers/metrics.js';

const podman = await startPodman();
const cluster = await startFakeCluster(podman, { bookmarkMs: 500 });
const kube = cluster.kube;
after(async () => {
  await cluster.close();
  await podman.close();
});

/** Nothing may be left behind by any test: no pod, no secret. */
async function assertNothingLeft() {
  await waitFor('no pod and no secret left', () => kube.store.list('pods').length === 0 && kube.store.list('secrets').length === 0, 60_000, 100).catch((err) => {
    throw new Error(`${err.message}: pods ${kube.store.list('pods').map((p) => `${p.metadata.name} ${p.status?.phase}`).join(', ')}; secrets ${kube.store.list('secrets').map((s) => s.metadata.name).join(', ')}`);
  });
  assert.deepEqual(kube.rejected, [], 'every object runyard sent passed the API validation (kubernetes-models)');
}
afterEach(assertNothingLeft);

const kubeBlock = (extra: Record<string, unknown> = {}) => ({ kubeconfig: cluster.kubeconfig, namespace: 'default', qps: 50, burst: 100, ...extra });
const makeProvider = (instanceId: string, extra: Partial<ConstructorParameters<typeof KubernetesProvider>[0]> = {}) =>
  new KubernetesProvider({ instanceId, log: silentLogger, targets: [{ connection: { kubeconfig: cluster.kubeconfig, qps: 50, burst: 100 }, namespace: 'default' }], stopGraceMs: 5_000, ...extra });

providerContract('kubernetes', {
  // the pool stays on the process provider with maxRunners 0 (the server starts nothing itself);
  // the provider under test finds the fake through KUBECONFIG, as one outside a cluster does
  make: (t) => new KubernetesProvider({ instanceId: t.server.instanceId, log: silentLogger, targets: [{ connection: { qps: 50, burst: 100 }, namespace: 'default' }], stopGraceMs: 5_000, env: { KUBECONFIG: cluster.kubeconfig } }),
  poolOverrides: { image: cluster.image },
});

describe('the provider seen through kubectl', () => {
  let t: TestServer;
  let provider: KubernetesProvider;
  const exits: [string, string][] = [];
  before(async () => {
    t = await startTestServer({ config: { pools: [{ name: 'k', maxRunners: 0 }] } });
    provider = makeProvider(t.server.instanceId);
    provider.onExit((id, d) => exits.push([id, d]));
  });
  after(async () => {
    await provider.close();
    await t.close();
  });

  async function spec(pool: Record<string, unknown> = {}): Promise<LaunchSpec> {
    const { body } = await t.api('POST', '/api/v1/tokens', { pool: 'k' });
    const runnerId = randomUUID();
    return {
      runnerId,
      name: `k-${runnerId.slice(0, 8)}`,
      pool: poolSchema.parse({ name: 'k', provider: 'kubernetes', image: cluster.image, kubernetes: kubeBlock(), ...pool }),
      classSize: { cpu: 0.5, memoryMb: 256 },
      serverUrl: t.url,
      registrationToken: body.secret,
      instanceId: t.server.instanceId,
    };
  }

  test('kubectl get shows the runner pod as runyard made it; describe shows it ready; kubectl delete is a lost runner and takes its secret', async () => {
    const s = await spec();
    await provider.create(s);
    await waitFor('registered', async () => (await t.api('GET', `/api/v1/runners/${s.runnerId}`)).body.runner?.state === 'idle', 30_000);
    const list = JSON.parse(await cluster.kubectl('get', 'pods', '-l', `runyard.runner=${s.runnerId}`, '-o', 'json'));
    assert.equal(list.items.length, 1);
    const pod = list.items[0];
    assert.equal(pod.metadata.name, `runyard-${s.runnerId}`);
    assert.deepEqual(
      [pod.metadata.labels['runyard.instance'], pod.metadata.labels['runyard.pool'], pod.metadata.labels['runyard.runner']],
      [t.server.instanceId, 'k', s.runnerId],
    );
    assert.equal(pod.spec.restartPolicy, 'Never');
    assert.equal(pod.spec.terminationGracePeriodSeconds, 5);
    const agent = pod.spec.containers[0];
    assert.deepEqual(agent.resources, { requests: { cpu: '500m', memory: '256Mi' }, limits: { cpu: '500m', memory: '256Mi' } });
    assert.equal(agent.readinessProbe.httpGet.path, '/readyz');
    assert.equal(agent.livenessProbe.httpGet.path, '/livez');
    const tokenEnv = agent.env.find((e: any) => e.name === 'RUNYARD_REGISTRATION_TOKEN');
    assert.deepEqual(tokenEnv.valueFrom, { secretKeyRef: { name: pod.metadata.name, key: 'registration-token' } });
    assert.ok(!JSON.stringify(pod).includes(s.registrationToken), 'the token is not in the pod spec');
    const secret = JSON.parse(await cluster.kubectl('get', 'secret', pod.metadata.name, '-o', 'json'));
    assert.deepEqual(secret.metadata.ownerReferences.map((o: any) => [o.kind, o.uid]), [['Pod', pod.metadata.uid]], 'the secret is owned by its pod');

    const described = await waitFor('kubectl describe shows it ready', async () => {
      const d = await cluster.kubectl('describe', 'pod', pod.metadata.name);
      return /Ready\s+True/.test(d) ? d : undefined;
    }, 20_000, 200);
    assert.match(described, /Status:\s+Running/);
    assert.match(described, /Successfully assigned default\/runyard-/);
    assert.match(described, /RUNYARD_REGISTRATION_TOKEN:\s+<set to the key 'registration-token' in secret/);

    assert.match(await cluster.kubectl('delete', 'pod', pod.metadata.name, '--wait=true'), /deleted/);
    const [, detail] = await waitFor('the lost runner reported', () => exits.find(([id]) => id === s.runnerId), 20_000);
    assert.match(detail, /pod runyard-.* (was deleted|is being deleted)/);
    await waitFor('its secret collected', async () => JSON.parse(await cluster.kubectl('get', 'secrets', '-l', `runyard.runner=${s.runnerId}`, '-o', 'json')).items.length === 0, 20_000, 200);
  });

  test('runners launched together: one secret first (no pod waits for its token), a pod each, then the pods own the secret; it goes with the last pod', async () => {
    const specs = [await spec(), await spec(), await spec()];
    const before = provider.apiCalls();
    const refs = await Promise.all(provider.createMany(specs));
    assert.equal(refs.length, 3);
    const calls = provider.apiCalls();
    const since = (op: string) => (calls[op] ?? 0) - (before[op] ?? 0);
    assert.deepEqual([since('create secret'), since('create pod'), since('patch secret')], [1, 3, 1], 'one call per pod and two for the launch');
    for (const s of specs) await waitFor(`runner ${s.runnerId} registered`, async () => (await t.api('GET', `/api/v1/runners/${s.runnerId}`)).body.runner?.state === 'idle', 60_000);
    const secretName = `runyard-${specs[0]!.runnerId}`;
    const secret = kube.store.get('secrets', 'default', secretName)!;
    const pods = specs.map((s) => kube.store.get('pods', 'default', `runyard-${s.runnerId}`)!);
    assert.deepEqual(secret.metadata.ownerReferences!.map((o) => o.uid).sort(), pods.map((p) => p.metadata.uid).sort(), 'owned by every pod of the launch');
    assert.ok(secret.metadata.ownerReferences!.every((o) => o.controller === false), 'a secret with several owners has no controller');
    const waited = kube.store.list('events').filter((e: any) => pods.some((p) => p.metadata.name === e.involvedObject?.name) && /not found/.test(e.message ?? ''));
    assert.deepEqual(waited.map((e: any) => e.message), [], 'no pod waited for its secret (CreateContainerConfigError)');
    for (const [i, s] of specs.entries()) {
      const ref = pods[i]!.spec.containers[0].env.find((e: any) => e.name === 'RUNYARD_REGISTRATION_TOKEN').valueFrom.secretKeyRef;
      assert.deepEqual(ref, { name: secretName, key: `registration-token.${s.runnerId}` });
      assert.equal(Buffer.from(secret.data[ref.key], 'base64').toString(), s.registrationToken);
    }
    await provider.terminate(specs[0]!.runnerId, { graceMs: 0 });
    await waitFor('the first pod gone', () => !kube.store.get('pods', 'default', `runyard-${specs[0]!.runnerId}`), 20_000);
    const left = kube.store.get('secrets', 'default', secretName);
    assert.equal(left?.metadata.ownerReferences?.length, 2, 'the secret stays while two of its pods live, without the gone one');
    await Promise.all(specs.slice(1).map((s) => provider.terminate(s.runnerId, { graceMs: 0 })));
    await waitFor('the secret collected with the last pod', () => !kube.store.get('secrets', 'default', secretName), 20_000, 100);
  });

  test('a pod the API rejects (422) is a config error naming the pool and the field; nothing is left', async () => {
    const s = await spec({ kubernetes: kubeBlock({ podTemplate: { spec: { containers: [{ name: 'agent', resources: { limits: { 'ephemeral-storage': 'lots' } } }] } } }) });
    // the template is merged under runyard's own fields: the class size's limits win, the template's extra key stays
    s.classSize = undefined;
    const err = await provider.create(s).then(() => undefined, (e) => e);
    assert.ok(err instanceof KubeApiError, String(err));
    assert.equal(err.code, 422);
    assert.match(err.message, /pool k: the kubernetes API rejected its pod \(field spec\.containers\[0\]\.resources/);
    kube.rejected.length = 0; // rejected on purpose
  });

  test('429 with Retry-After and 403 exceeded quota are waited out; every call is counted', async () => {
    const before = provider.apiCalls();
    kube.throttle(2, 1);
    kube.exhaustQuota(1);
    const s = await spec();
    const t0 = Date.now();
    await provider.create(s);
    assert.ok(Date.now() - t0 >= 2_000, 'waited the two Retry-After seconds (and the quota wait)');
    // the launch's secret goes first, then its pod: the throttling falls on whichever comes
    const calls = kube.calls.filter((c) => c.method === 'POST' && (c.path.endsWith('/pods') || c.path.endsWith('/secrets')));
    assert.ok(calls.filter((c) => c.status === 429).length >= 2, 'two throttled');
    assert.ok(calls.some((c) => c.status === 403), 'one over quota');
    assert.equal(calls.filter((c) => c.path.endsWith('/pods')).at(-1)!.status, 201, 'then created');
    const after = provider.apiCalls();
    const creates = (a: Record<string, number>) => (a['create pod'] ?? 0) + (a['create secret'] ?? 0);
    assert.ok(creates(after) - creates(before) >= 4, 'the retries are counted');
    await waitFor('registered', async () => (await t.api('GET', `/api/v1/runners/${s.runnerId}`)).body.runner?.state === 'idle', 30_000);
    await provider.terminate(s.runnerId, { graceMs: 5_000 });
  });

  test('a dropped watch and a 410 Expired are recovered from: the provider still sees its pods go', async () => {
    const s = await spec();
    await provider.create(s);
    await waitFor('registered', async () => (await t.api('GET', `/api/v1/runners/${s.runnerId}`)).body.runner?.state === 'idle', 30_000);
    const watches = () => kube.calls.filter((c) => c.watch).length;
    const lists = () => kube.calls.filter((c) => !c.watch && c.method === 'GET' && c.path === '/api/v1/namespaces/default/pods').length;
    const w0 = watches();
    kube.dropWatches();
    await waitFor('the watch resumed', () => watches() > w0, 20_000);
    const l0 = lists();
    kube.expireWatches();
    await waitFor('a relist after 410', () => lists() > l0, 20_000);
    assert.equal((await provider.list()).filter((r) => r.runnerId === s.runnerId && r.alive).length, 1, 'the pod is still known');
    await cluster.kubectl('delete', 'pod', `runyard-${s.runnerId}`, '--wait=false');
    await waitFor('the deletion seen through the new watch', () => exits.some(([id]) => id === s.runnerId), 20_000);
  });
});

const jobOf = async (t: TestServer, id: number) => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;
const logsOf = async (t: TestServer, id: number) => (await t.api('GET', `/api/v1/jobs/${id}/logs`)).body.lines.map((l: any) => l.m).join('\n');
const done = (t: TestServer, id: number, ms = 90_000) =>
  waitFor(`job ${id} finished`, async () => {
    const j = await jobOf(t, id);
    return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
  }, ms, 100);

describe('kubernetes runners under the scheduler', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({
      config: {
        scheduler: { tick: '1s', offlineAfter: '1h', stuckAfter: '1h', stopGrace: '5s' },
        classSizes: { tiny: { cpu: 0.5, memoryMb: 256 } },
        pools: [
          { name: 'kp', provider: 'kubernetes', image: cluster.image, class: 'tiny', maxRunners: 2, idleTimeout: '3s', startTimeout: '60s', kubernetes: kubeBlock() },
          { name: 'kdyn', provider: 'kubernetes', image: cluster.image, dynamicImages: ['localhost/runyard-test-base-*'], maxRunners: 1, idleTimeout: '2s', kubernetes: kubeBlock() },
          { name: 'kbad', provider: 'kubernetes', image: cluster.image, maxRunners: 1, idleTimeout: '2s', kubernetes: kubeBlock() },
          { name: 'kunsched', provider: 'kubernetes', image: cluster.image, maxRunners: 1, idleTimeout: '2s', startTimeout: '3s', kubernetes: kubeBlock() },
        ],
      },
    });
  });
  after(async () => {
    kube.faults.unschedulable = false;
    kube.faults.errImagePull = false;
    kube.faults.slowStartMs = 0;
    await t.close();
  });
  afterEach(() => {
    kube.faults.unschedulable = false;
    kube.faults.errImagePull = false;
    kube.faults.slowStartMs = 0;
  });

  test('a job scales the pool from zero and runs inside a pod (its name from the downward API); idle, the pod and its secret are deleted; /metrics counts the API calls', async () => {
    const creates = async () => apiCallsMetric(t, 'kubernetes', 'create pod');
    const before = await creates();
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'kp', command: 'echo "pod=$POD_NAME ns=$POD_NAMESPACE"' });
    const j = await done(t, body.job.id);
    assert.equal(j.state, 'succeeded', JSON.stringify(j));
    const logs = await logsOf(t, body.job.id);
    assert.match(logs, new RegExp(`pod=runyard-${j.runnerId} ns=default`), logs);
    const [runner] = await t.server.db.query<{ provider: string; provider_ref: string }>(`select provider, provider_ref from runners where id = $1`, [j.runnerId]);
    assert.equal(runner!.provider, 'kubernetes');
    assert.match(runner!.provider_ref, new RegExp(`^kubernetes:default/runyard-${j.runnerId}@[0-9a-f]{12}$`));
    assert.equal(await creates(), before + 1, 'runyard_provider_api_calls_total{provider="kubernetes",operation="create pod"} moved by one');
    assert.ok((await apiCallsMetric(t, 'kubernetes', 'create secret')) >= 1);
    // idle for 3 s: scaled to zero
    await waitFor('scaled to zero', async () => (await t.server.db.query(`select 1 from runners where pool = 'kp' and state <> 'terminated'`)).length === 0, 60_000, 200);
    assert.ok((await apiCallsMetric(t, 'kubernetes', 'delete pod')) >= 1, 'the scale-down delete is counted too');
    await assertNothingLeft();
  });

  test('a job on its own base image runs there: an init container copied the agent in', async () => {
    const base = buildBaseImage(podman.cli, 'k8s');
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'kdyn', image: base, command: 'read base < /etc/runyard-test-base && echo "base=$base on $POD_NAME"' });
    assert.equal(body.job?.id !== undefined, true, JSON.stringify(body));
    // the init container copies the whole agent bundle (about 300 MB, 17k files): slow on a busy machine
    const j = await done(t, body.job.id, 240_000);
    assert.equal(j.state, 'succeeded', `${JSON.stringify(j)} ${await logsOf(t, body.job.id)}`);
    assert.match(await logsOf(t, body.job.id), new RegExp(`^base=k8s on runyard-${j.runnerId}$`, 'm'), 'ran on the base image, in its pod');
    // the base has no Node and no agent: the job could only run through the init container's copy
  });

  test('ErrImagePull: the start fails with the reason (runner, job log), the pod is deleted, the job waits', async () => {
    kube.faults.errImagePull = true;
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'kbad', command: 'echo never' });
    const failed = await waitFor('a failed start', async () => (await t.server.db.query<{ id: string; state_reason: string }>(`select id, state_reason from runners where pool = 'kbad' and state = 'terminated'`))[0], 60_000, 100);
    assert.match(failed.state_reason, /ImagePullBackOff|ErrImagePull/);
    assert.match(await logsOf(t, body.job.id), /failed to start: pod runyard-.* is stuck: (ErrImagePull|ImagePullBackOff)/);
    assert.equal((await jobOf(t, body.job.id)).state, 'queued', 'the job waits for a runner that can start');
    kube.faults.errImagePull = false;
    const j = await done(t, body.job.id);
    assert.equal(j.state, 'succeeded', 'once images pull again, it runs');
    await waitFor('scaled to zero', async () => (await t.server.db.query(`select 1 from runners where pool = 'kbad' and state <> 'terminated'`)).length === 0, 60_000, 200);
  });

  test('Unschedulable past startTimeout: the start fails with that reason and the pod is deleted', async () => {
    kube.faults.unschedulable = true;
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'kunsched', command: 'echo never' });
    const failed = await waitFor('a failed start', async () => (await t.server.db.query<{ state_reason: string }>(`select state_reason from runners where pool = 'kunsched' and state = 'terminated' and state_reason like '%Unschedulable%'`))[0], 60_000, 100);
    assert.match(failed.state_reason, /Unschedulable for \d+s: 0\/1 nodes are available/);
    assert.match(await logsOf(t, body.job.id), /Unschedulable/);
    assert.equal((await t.api('POST', `/api/v1/jobs/${body.job.id}/cancel`)).status, 200);
    kube.faults.unschedulable = false;
  });

  test('slow start: a pod that takes seconds to start still runs the job', async () => {
    kube.faults.slowStartMs = 3_000;
    const t0 = Date.now();
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'kp', command: 'echo slow' });
    const j = await done(t, body.job.id);
    assert.equal(j.state, 'succeeded');
    assert.ok(Date.now() - t0 >= 3_000, 'the start waited for the slow pod');
    await waitFor('scaled to zero', async () => (await t.server.db.query(`select 1 from runners where pool = 'kp' and state <> 'terminated'`)).length === 0, 60_000, 200);
  });

  test('node drain: the evicted runner is lost, its job goes back to the queue with the reason and runs again', async () => {
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'kp', command: 'if [ "$RUNYARD_ATTEMPT" = 1 ]; then sleep 60; fi; echo attempt $RUNYARD_ATTEMPT' });
    const first = await waitFor('running', async () => {
      const j = await jobOf(t, body.job.id);
      return j.state === 'running' ? j : undefined;
    }, 60_000, 100);
    await kube.drainNode();
    const j = await done(t, body.job.id, 120_000);
    assert.equal(j.state, 'succeeded', JSON.stringify(j));
    assert.equal(j.attempt, 2, 'requeued once');
    assert.notEqual(j.runnerId, first.runnerId);
    const events = (await t.api('GET', `/api/v1/events?kind=runner&subject=${first.runnerId}&after=0`)).body.events;
    assert.ok(events.some((e: any) => /evicted \(EvictionByEvictionAPI/.test(e.reason ?? '')), JSON.stringify(events.map((e: any) => e.reason)));
    await waitFor('scaled to zero', async () => (await t.server.db.query(`select 1 from runners where pool = 'kp' and state <> 'terminated'`)).length === 0, 60_000, 200);
  });
});

describe('kill -9 of the control plane with kubernetes runners', () => {
  let db: { url: string; drop: () => Promise<void> };
  let dataDir = '';
  const servers: ServerProcess[] = [];
  before(async () => {
    db = await createPgDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'runyard-k8s-crash-'));
  });
  after(async () => {
    for (const s of servers) await s.kill9();
    await db.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('`runyard up` runs jobs in pods; after kill -9 a restart adopts the pod; scale to zero deletes pod and secret', async () => {
    const port = await freePort();
    const yaml = [
      'scheduler: { tick: 1s, offlineAfter: 1h, stuckAfter: 1h, stopGrace: 5s }',
      'runner: { heartbeatInterval: 1s }',
      'pools:',
      `  - { name: kup, provider: kubernetes, image: ${JSON.stringify(cluster.image)}, maxRunners: 1, idleTimeout: 6s, kubernetes: { kubeconfig: ${JSON.stringify(cluster.kubeconfig)}, namespace: default } }`,
      '',
    ].join('\n');
    const a = new ServerProcess({ dbUrl: db.url, dataDir, port, yaml });
    servers.push(a);
    await a.start();
    const { job } = await a.api('POST', '/api/v1/jobs', { pool: 'kup', command: 'sleep 3; echo "survived on $POD_NAME"' });
    const running = await waitFor('job running', async () => {
      const j = (await a.api('GET', `/api/v1/jobs/${job.id}`)).job;
      return j.state === 'running' ? j : undefined;
    }, 60_000, 50);
    await a.kill9();
    assert.equal(kube.objects('pods', `runyard.runner=${running.runnerId}`).length, 1, 'the pod outlived the kill');

    const b = new ServerProcess({ dbUrl: db.url, dataDir, port, yaml });
    servers.push(b);
    await b.start();
    const j = await waitFor('the job finished', async () => {
      const x = (await b.api('GET', `/api/v1/jobs/${job.id}`)).job;
      return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(x.state) ? x : undefined;
    }, 60_000, 100);
    assert.equal(j.state, 'succeeded', JSON.stringify(j));
    assert.equal(j.attempt, 1, 'not requeued: the adopted runner finished it');
    assert.equal(j.runnerId, running.runnerId);
    const lines = (await b.api('GET', `/api/v1/jobs/${job.id}/logs`)).lines.map((l: any) => l.m).join('\n');
    assert.match(lines, new RegExp(`survived on runyard-${running.runnerId}`));
    await waitFor('scaled to zero: pod and secret deleted', () => kube.objects('pods', `runyard.runner=${running.runnerId}`).length === 0 && kube.objects('secrets', `runyard.runner=${running.runnerId}`).length === 0, 60_000, 200);
    await b.stop();
  });
});

describe('kubernetes pool config and an unreachable API', () => {
  test('a bad kubernetes block is refused at config load, naming the field', () => {
    const bad = (kubernetes: Record<string, unknown>) => {
      const r = poolSchema.safeParse({ name: 'k', provider: 'kubernetes', image: 'x', kubernetes });
      assert.equal(r.success, false);
      return r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    };
    assert.match(bad({ namespace: 'Not_A_Namespace' }), /^kubernetes\.namespace: must be a namespace name/);
    assert.match(bad({ tolerations: [{ key: 'ci', operator: 'Sometimes' }] }), /^kubernetes\.tolerations\.0\.operator:/);
    assert.match(bad({ nodeSelector: { 'bad key!': 'x' } }), /^kubernetes\.nodeSelector\.bad key!: /);
    assert.match(bad({ podTemplate: { spec: { containers: [{ image: 'x' }] } } }), /^kubernetes\.podTemplate\.spec\.containers\.0\.name:/);
    assert.match(bad({ qps: 0 }), /^kubernetes\.qps:/);
    assert.match(bad({ replicas: 3 }), /Unrecognized key.*replicas/);
    const r = poolSchema.safeParse({ name: 'k', provider: 'process', kubernetes: {} });
    assert.match(r.error!.issues[0]!.message, /a kubernetes block needs provider kubernetes/);
    assert.equal(poolSchema.parse({ name: 'k', provider: 'kubernetes', image: 'x', kubernetes: {} }).kubernetes?.qps, 20, 'defaults: qps 20');
  });

  test('an unreachable API: list fails with the server named (reconcile skips a round), create fails retryable', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'runyard-kube-down-'));
    const down = new (await import('./helpers/fake-kube/fake-kube.js')).FakeKube({ dockerHost: podman.host });
    const file = join(dir, 'kubeconfig');
    down.url = `http://127.0.0.1:${port}`;
    down.writeKubeconfig(file);
    const p = new KubernetesProvider({ instanceId: 'i', log: silentLogger, targets: [{ connection: { kubeconfig: file, qps: 50, burst: 100 }, namespace: 'default' }], stopGraceMs: 1_000, syncTimeoutMs: 2_000 });
    try {
      await assert.rejects(p.list(), (err: Error) => err instanceof KubeApiError && err.retryable && err.message.includes(`kubernetes API at http://127.0.0.1:${port} has not answered`));
      const spec: LaunchSpec = {
        runnerId: randomUUID(),
        name: 'n',
        pool: poolSchema.parse({ name: 'k', provider: 'kubernetes', image: cluster.image, kubernetes: { kubeconfig: file } }),
        serverUrl: 'http://127.0.0.1:1',
        registrationToken: 'x',
        instanceId: 'i',
      };
      await assert.rejects(p.create(spec), (err: Error) => err instanceof KubeApiError && err.retryable && /unreachable/.test(err.message));
    } finally {
      await p.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
