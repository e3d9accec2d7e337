/*
 * 6c. Kubernetes provider, through the fake API server (test/helpers/fake-kube) whose pods run as
 * podman containers. (1) The fake's own bare pod start: create a Pod over HTTP -> its container
 * running, as the fake reports it. (2) Scale from zero through runyard: submit -> the job's first
 * output line, each iteration on a new pool (minIdle 0). runyard's overhead is (2) - (1): agent
 * boot, registration, claim, job spawn, plus the provider's create calls. (3) A burst of 200 jobs
 * (one batch) on maxRunners 50 with the default rate limit (qps 20, burst 40): time until 50
 * pods exist, against the token bucket's floor for the calls they wait for (the launch's one Secret,
 * then the 50 pod creates); pods are held Pending (Unschedulable) so 50 agents do not swamp the
 * machine. (4) API calls per runner.
 */
import { startPodman } from '../../test/helpers/podman.js';
import { startFakeCluster } from '../../test/helpers/fake-kube/index.js';
import type { KubernetesProvider } from '../../src/providers/kubernetes/kubernetes-provider.js';
import { coldJob, stopRunner } from '../lib/coldjob.js';
import { waitFor } from '../lib/fleet.js';
import { TokenBucket } from '../../src/lib/token-bucket.js';
import { startBenchServer } from '../lib/server.js';
import { fmt, median, percentile } from '../lib/stats.js';
import { runSection, targetAtMost, type Row } from '../lib/section.js';

await runSection('kubernetes', '6c. Kubernetes provider (fake API server, pods on podman)', async ({ quick, log }) => {
  const iterations = Number(process.env.BENCH_COLD_RUNS ?? (quick ? 3 : 7));
  const podman = await startPodman();
  const cluster = await startFakeCluster(podman, { probeMs: 100 });
  const { kube, kubeconfig, image } = cluster;
  const block = { kubeconfig, namespace: 'default' };
  const s = await startBenchServer({
    store: 'postgres',
    tag: 'kube',
    config: { scheduler: { stopGrace: '2s' }, pools: [{ name: 'kube-base', provider: 'kubernetes', image: image, maxRunners: 0, kubernetes: block }] },
  });
  const provider = s.server.providers.get('kubernetes') as KubernetesProvider;
  const rows: Row[] = [];
  const api = (method: string, path: string, body?: unknown) =>
    fetch(kube.url + path, { method, headers: { authorization: `Bearer ${kube.token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) }).then((r) => r.json() as Promise<any>);
  try {
    // (1) the fake's bare pod start
    const bare: number[] = [];
    for (let i = 0; i < iterations; i++) {
      const name = `bare-${i}`;
      const t0 = performance.now();
      await api('POST', '/api/v1/namespaces/default/pods', { metadata: { name }, spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: image, command: ['/bin/sh', '-c', 'echo started; sleep 30'] }] } });
      await waitFor('bare pod running', () => kube.store.get('pods', 'default', name)?.status?.containerStatuses?.[0]?.state?.running, 30_000, 5);
      bare.push(performance.now() - t0);
      await api('DELETE', `/api/v1/namespaces/default/pods/${name}`, { gracePeriodSeconds: 0 });
      await waitFor('bare pod gone', () => !kube.store.get('pods', 'default', name), 30_000, 20);
    }
    log(`bare pod start p50 ${fmt(median(bare))} ms`);

    // (2) scale from zero through runyard
    const samples: Record<string, number>[] = [];
    for (let i = 0; i < iterations; i++) {
      const pool = `kube-cold-${i}`;
      await s.http.ok('POST', '/api/v1/pools', { name: pool, provider: 'kubernetes', image: image, maxRunners: 1, maxJobsPerRunner: 1, minIdle: 0, kubernetes: block });
      await s.server.scheduler.idle();
      // when the fake had the pod and its container running, on the same clock as the store's stamps
      const seen: { pod?: number; running?: number } = {};
      const watch = setInterval(() => {
        const pod = kube.objects('pods', `runyard.pool=${pool}`)[0];
        const at = performance.timeOrigin + performance.now();
        if (pod) seen.pod ??= at;
        if (pod?.status?.containerStatuses?.[0]?.state?.running) seen.running ??= at;
      }, 2);
      const c = await coldJob(s, pool).finally(() => clearInterval(watch));
      samples.push({
        'submit → runner row created (scheduler pass)': c.runnerCreated - c.t0,
        'runner created → pod exists (the launch Secret, then the Pod: the provider)': (seen.pod ?? NaN) - c.runnerCreated,
        'pod exists → container running (the fake kubelet on podman)': (seen.running ?? NaN) - (seen.pod ?? NaN),
        'container running → registered (agent boot and registration)': c.registered - (seen.running ?? NaN),
        'registered → job claimed': c.claimed - c.registered,
        'claimed → first output line': c.firstOutput - c.claimed,
        'submit → job started (first output line)': c.firstOutput - c.t0,
      });
      log(`iteration ${i + 1}: job output after ${fmt(c.firstOutput - c.t0)} ms`);
      await stopRunner(s, c.runnerId);
      await waitFor('runner pod gone', () => kube.objects('pods', `runyard.runner=${c.runnerId}`).length === 0, 30_000, 20);
    }
    const col = (k: string) => samples.map((x) => x[k]!).filter((v) => !Number.isNaN(v));
    const started = col('submit → job started (first output line)');
    const overhead = median(started) - median(bare);
    rows.push({ metric: 'fake API: bare pod create → container running, p50', value: median(bare), unit: 'ms', runs: bare.map((v) => Math.round(v)) });
    rows.push({ key: true, metric: 'kubernetes: submit → job started (first output line), p50', value: median(started), unit: 'ms', runs: started.map((v) => Math.round(v)) });
    rows.push({ key: true, metric: "kubernetes: runyard's overhead above the bare pod start, p50", value: overhead, unit: 'ms', target: '<= 300', met: targetAtMost(overhead, 300) });

    // (3) a burst of 200 jobs (one batch) on maxRunners 50, pods held Pending
    kube.faults.unschedulable = true;
    const before = provider.apiCalls();
    await s.http.ok('POST', '/api/v1/pools', { name: 'kube-burst', provider: 'kubernetes', image: image, maxRunners: 50, minIdle: 0, startTimeout: '10m', kubernetes: block });
    await s.server.scheduler.idle();
    const qps = 20;
    const burst = 40;
    const since = (a: Record<string, number>, op: string) => (a[op] ?? 0) - (before[op] ?? 0);
    let firstCreate = NaN;
    const t0 = performance.now();
    const { jobs } = await s.http.ok('POST', '/api/v1/jobs/batch', { jobs: Array.from({ length: 200 }, () => ({ pool: 'kube-burst', command: 'true' })) });
    const ids: number[] = jobs.map((j: { id: number }) => j.id);
    await waitFor('50 pods exist', () => {
      if (Number.isNaN(firstCreate) && since(provider.apiCalls(), 'create secret') > 0) firstCreate = performance.now();
      return kube.objects('pods', 'runyard.pool=kube-burst').length >= 50;
    }, 120_000, 2);
    const to50 = performance.now() - t0;
    const mid = provider.apiCalls();
    // every call through the bucket until the 50th pod existed (list and watch restarts too)
    const callsTo50 = Object.keys(mid).reduce((n, op) => n + since(mid, op), 0);
    // the floor: the calls the 50th pod must wait for, the launch's Secret and the 50 pod creates,
    // the first 40 from the burst, the rest at 20 a second (the owner patch comes after)
    const floor = TokenBucket.floorMs(51, burst, qps);
    rows.push({ key: true, metric: 'burst of 200 on maxRunners 50: submit → 50 pods exist', value: to50, unit: 'ms', target: `<= ${fmt(1.2 * floor)} (1.2 × the bucket floor: 1 Secret + 50 pod creates at qps ${qps}, burst ${burst} = ${fmt(floor)} ms)`, met: targetAtMost(to50, 1.2 * floor) });
    rows.push({ metric: '  of which submit → first API call (one batch of 200 jobs, the scheduler pass, 50 runner rows and tokens)', value: firstCreate - t0, unit: 'ms' });
    rows.push({ key: true, metric: '  first API call → 50 pods exist / bucket floor (the provider’s share)', value: (to50 - (firstCreate - t0)) / floor, unit: '×', target: '<= 1.2', met: targetAtMost((to50 - (firstCreate - t0)) / floor, 1.2) });
    rows.push({ metric: '  API calls through the bucket until the 50th pod existed', value: callsTo50, unit: 'calls' });
    for (const id of ids) await s.http.ok('POST', `/api/v1/jobs/${id}/cancel`, {});
    kube.faults.unschedulable = false;
    const runners = (await s.server.db.query<{ id: string }>(`select id from runners where pool = 'kube-burst'`)).map((r) => r.id);
    for (const id of runners) await s.http.ok('POST', `/api/v1/runners/${id}/terminate`, {}).catch(() => {});
    await waitFor('burst pods gone', () => kube.objects('pods', 'runyard.pool=kube-burst').length === 0, 180_000, 100);
    const endCalls = provider.apiCalls();
    const perRunnerOps = ['create pod', 'read pod', 'delete pod', 'create secret', 'patch secret', 'delete secret'];
    const perRunner = perRunnerOps.reduce((n, op) => n + since(endCalls, op), 0) / runners.length;
    rows.push({ key: true, metric: 'API calls per runner (create and delete pod, its share of the launch Secret’s create and patch)', value: perRunner, unit: 'calls', target: '<= 4', met: targetAtMost(perRunner, 4) });
    rows.push({ metric: 'API calls per server: lists + watches over the whole section', value: (endCalls['list pods'] ?? 0) + (endCalls['watch pods'] ?? 0), unit: 'calls' });
    const startCalls = since(mid, 'create pod') + since(mid, 'create secret');
    return {
      rows,
      notes: [
        `${iterations} iterations each of a bare pod and of a scale-from-zero job through the fake API server (loopback HTTP, client-node 1.4.0) on podman (runc); image ${image} present. The fake's readiness probes run every 100 ms.`,
        `Burst: 200 jobs in one batch; ${runners.length} runners started, ${startCalls} create calls (pods and the launch's Secret) until the 50th pod existed; pods held Pending (Unschedulable) so the figure is the API path, not 50 agents booting on 2 cores. The floor counts the launch's Secret and the 50 pod creates: runners launched together share one Secret, created before their pods and handed to them by one patch afterwards.`,
      ],
      details: [
        {
          title: 'Scale from zero, by stage (ms)',
          headers: ['stage', 'p50', 'max'],
          rows: Object.keys(samples[0]!).map((k) => [k, +percentile(col(k), 50).toFixed(1), +Math.max(...col(k)).toFixed(1)]),
        },
      ],
    };
  } finally {
    kube.faults.unschedulable = false;
    await s.close();
    await cluster.close();
    await podman.close();
  }
});
