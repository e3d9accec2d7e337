/*
 * 6b. Scale from zero with the container provider, image present: a job submitted to a pool with
 * no runner -> the scheduler creates and starts a container on a real podman engine (its Docker
 * API service) -> the agent in it registers -> claims -> the job's process runs. Each iteration
 * uses a new pool (minIdle 0), so every job starts from zero.
 */
import { startPodman } from '../../test/helpers/podman.js';
import { coldJob, stopRunner } from '../lib/coldjob.js';
import { waitFor } from '../lib/fleet.js';
import { startBenchServer } from '../lib/server.js';
import { fmt, median, percentile } from '../lib/stats.js';
import { runSection, targetAtMost, type Row } from '../lib/section.js';

await runSection('container-coldstart', '6b. Scale from zero (container provider)', async ({ quick, log }) => {
  const iterations = Number(process.env.BENCH_COLD_RUNS ?? (quick ? 3 : 9));
  const podman = await startPodman();
  process.env.RUNYARD_CONTAINER_HOST = podman.host;
  const s = await startBenchServer({ store: 'postgres', tag: 'ctrcold', config: { pools: [{ name: 'local', maxRunners: 0 }] } });
  const rows: Row[] = [];
  try {
    const samples: Record<string, number>[] = [];
    for (let i = 0; i < iterations; i++) {
      const pool = `ctr-cold-${i}`;
      await s.http.ok('POST', '/api/v1/pools', { name: pool, provider: 'container', image: podman.image, maxRunners: 1, maxJobsPerRunner: 1, minIdle: 0 });
      await s.server.scheduler.idle();
      const c = await coldJob(s, pool);
      const sample = {
        'submit → runner row created (scheduler pass)': c.runnerCreated - c.t0,
        'runner created → registered (container create + start + agent boot)': c.registered - c.runnerCreated,
        'registered → job claimed': c.claimed - c.registered,
        'claimed → first output line': c.firstOutput - c.claimed,
        'submit → runner registered': c.registered - c.t0,
        'submit → job started (first output line)': c.firstOutput - c.t0,
      };
      samples.push(sample);
      log(`iteration ${i + 1}: registered after ${fmt(sample['submit → runner registered'])} ms, job output after ${fmt(sample['submit → job started (first output line)'])} ms`);
      await stopRunner(s, c.runnerId);
      await s.server.scheduler.idle();
      // let the engine finish removing the container and the machine settle, as the process section does
      await waitFor('runner container removed', () => !podman.cli('ps', '-aq', '--filter', `label=runyard.runner=${c.runnerId}`).trim(), 30_000, 50);
      await new Promise((r) => setTimeout(r, 1_000));
    }
    const col = (k: string) => samples.map((x) => x[k]!).filter((v) => !Number.isNaN(v));
    const reg = col('submit → runner registered');
    const started = col('submit → job started (first output line)');
    const create = (await s.server.ctx.metrics.runnerCreate.get()).values.filter((v) => v.metricName?.endsWith('_sum') || v.metricName?.endsWith('_count'));
    const sum = create.find((v) => v.metricName?.endsWith('_sum'))?.value ?? NaN;
    const count = create.find((v) => v.metricName?.endsWith('_count'))?.value ?? NaN;
    rows.push({ key: true, metric: 'container: submit → runner registered, p50', value: median(reg), unit: 'ms', runs: reg.map((v) => Math.round(v)) });
    rows.push({ key: true, metric: 'container: submit → job started (first output line), p50', value: median(started), unit: 'ms', target: '<= 1000', met: targetAtMost(median(started), 1000), runs: started.map((v) => Math.round(v)) });
    rows.push({ metric: 'container: submit → job started, max', value: Math.max(...started), unit: 'ms' });
    rows.push({ metric: 'container create + start through the engine API, mean (runyard_runner_create_seconds)', value: (sum / count) * 1000, unit: 'ms' });
    return {
      rows,
      notes: [
        `${iterations} iterations on podman ${podman.cli('version', '--format', '{{.Client.Version}}').trim()} (runc) over its Docker API socket; image ${podman.image} already present. Each applies a new container pool (minIdle 0, maxRunners 1), submits \`echo started\` over HTTP and waits for it; the runner is terminated before the next one.`,
      ],
      details: [
        {
          title: 'Breakdown by stage (ms)',
          headers: ['stage', 'p50', 'max'],
          rows: Object.keys(samples[0]!).map((k) => [k, +percentile(col(k), 50).toFixed(1), +Math.max(...col(k)).toFixed(1)]),
        },
      ],
    };
  } finally {
    await s.close();
    await podman.close();
  }
});
