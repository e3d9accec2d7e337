/*
 * 6. Scale from zero with the process provider: a job submitted to a pool with no runner ->
 * the scheduler starts an agent process -> it registers -> claims -> the job's process runs.
 * Each iteration uses a new pool (minIdle 0), so every job starts from zero.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { agentLogs } from '../lib/fleet.js';
import { coldJob, stopRunner } from '../lib/coldjob.js';
import { startBenchServer } from '../lib/server.js';
import { fmt, median, percentile } from '../lib/stats.js';
import { runSection, targetAtMost, type Row } from '../lib/section.js';

await runSection('coldstart', '6. Scale from zero (process provider)', async ({ quick, log }) => {
  const iterations = Number(process.env.BENCH_COLD_RUNS ?? (quick ? 3 : 9));
  const s = await startBenchServer({ store: 'postgres', tag: 'cold', config: { pools: [{ name: 'local', maxRunners: 1 }] } });
  const rows: Row[] = [];
  try {
    const samples: Record<string, number>[] = [];
    for (let i = 0; i < iterations; i++) {
      const pool = `cold-${i}`;
      await s.http.ok('POST', '/api/v1/pools', { name: pool, maxRunners: 1, maxJobsPerRunner: 1, minIdle: 0 });
      await new Promise((r) => setTimeout(r, 300));
      await s.server.scheduler.idle();
      const c = await coldJob(s, pool);
      const runner = { id: c.runnerId, created_at: new Date(c.runnerCreated), registered_at: new Date(c.registered) };
      const done = { claimed_at: new Date(c.claimed) };
      const { t0, firstOutput: out } = c;
      const mine = agentLogs(s).filter((l) => l.runnerId === runner.id || l.msg === 'agent starting');
      const boot = mine.find((l) => l.msg === 'agent starting' && l.runnerId === runner.id)?.time;
      const ready = mine.find((l) => l.msg === 'ready for jobs')?.time;
      const connected = mine.find((l) => l.msg === 'control channel connected')?.time;
      const sample = {
        'submit → runner row created (scheduler pass)': runner.created_at.getTime() - t0,
        'runner created → agent process running main (log "agent starting")': boot !== undefined ? boot - runner.created_at.getTime() : NaN,
        'agent starting → registered (server registered_at)': boot !== undefined ? runner.registered_at.getTime() - boot : NaN,
        'registered → ready (control channel, setup)': ready !== undefined ? ready - runner.registered_at.getTime() : NaN,
        'control channel connected (after registered)': connected !== undefined ? connected - runner.registered_at.getTime() : NaN,
        'registered → job claimed (server claimed_at)': done.claimed_at.getTime() - runner.registered_at.getTime(),
        'claimed → first output line': out - done.claimed_at.getTime(),
        'submit → runner registered': runner.registered_at.getTime() - t0,
        'submit → job started (first output line)': out - t0,
      };
      samples.push(sample);
      log(`iteration ${i + 1}: registered after ${fmt(sample['submit → runner registered'])} ms, job output after ${fmt(sample['submit → job started (first output line)'])} ms`);
      // Stop it and wait, so the next iteration starts on a quiet machine.
      await stopRunner(s, runner.id);
      await new Promise((r) => setTimeout(r, 500));
    }
    // Reference: where the agent's process start goes (node itself, the CLI's imports, the agent's).
    const root = resolve(import.meta.dirname, '../..');
    const wall = (args: string[]) => {
      const xs: number[] = [];
      for (let i = 0; i < 7; i++) {
        const t = performance.now();
        const r = spawnSync(process.execPath, args, { cwd: root, env: { ...process.env, NODE_OPTIONS: '' }, stdio: 'ignore' });
        if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
        xs.push(performance.now() - t);
      }
      return median(xs);
    };
    const bare = wall(['-e', '0']);
    const agentOnly = wall(['--input-type=module', '-e', "await import('./dist/agent/agent.js')"]);
    const unbundled = wall(['dist/bin/agent-cli.js', 'agent', '--help']);
    const bundled = wall(['bin/runyard.js', 'agent', '--help']);
    const col = (k: string) => samples.map((x) => x[k]!).filter((v) => !Number.isNaN(v));
    const reg = col('submit → runner registered');
    const started = col('submit → job started (first output line)');
    rows.push({ key: true, metric: 'submit → runner registered, p50', value: median(reg), unit: 'ms', runs: reg.map((v) => Math.round(v)) });
    rows.push({ metric: 'submit → job started (first output line), p50', value: median(started), unit: 'ms', target: '<= 250', met: targetAtMost(median(started), 250), runs: started.map((v) => Math.round(v)) });
    rows.push({ metric: 'submit → job started, max', value: Math.max(...started), unit: 'ms' });
    rows.push({ metric: 'reference: `node -e 0` (Node.js start and exit)', value: bare, unit: 'ms', note: 'median of 7, wall time' });
    rows.push({ metric: 'reference: node importing dist/agent/agent.js only', value: agentOnly, unit: 'ms', note: 'median of 7' });
    rows.push({ metric: 'reference: `runyard agent --help` from the compiled modules (dist/bin/agent-cli.js)', value: unbundled, unit: 'ms', note: 'median of 7' });
    rows.push({ metric: 'reference: `runyard agent --help` as runners start it (bin/runyard.js → the bundle dist/agent.cjs and its code cache)', value: bundled, unit: 'ms', note: 'median of 7' });
    return {
      rows,
      notes: [
        `${iterations} iterations; each applies a new pool (minIdle 0, maxRunners 1), submits \`echo started\` over HTTP and waits for it; the runner is terminated before the next one. Job started = the \`t\` the agent stamped on the job's first stdout line; submit = the client's send time.`,
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
  }
});
