/*
 * 3. Latency from submit to the job's process started, on warm runners at moderate load.
 *
 * A load generator in a child process submits one job per request at a fixed rate and records
 * each job's send time (epoch ms, sub-millisecond). The job is `echo started`; the runner stamps
 * every line it reads from the job with `t` (epoch ms), so the job's first stdout line minus the
 * send time is "submit -> job process running" (it includes /bin/sh starting and running echo).
 * The agent's own log ("job started", right after spawn() returned) and the server's timestamps
 * give the breakdown by stage.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { LoadProcess } from '../lib/child.js';
import { agentLogs, finishedCount, waitFor } from '../lib/fleet.js';
import { startFleet, closeFleet } from '../lib/fleetbench.js';
import { fmt, median, percentile } from '../lib/stats.js';
import { runSection, targetAtMost, type Row } from '../lib/section.js';

await runSection('latency', '3. Latency: submit → job process started (warm runners)', async ({ quick, runs, log }) => {
  const count = Number(process.env.BENCH_LATENCY_JOBS ?? (quick ? 300 : 1000));
  const rate = Number(process.env.BENCH_LATENCY_RATE ?? 20);
  const s = await startFleet({ store: 'postgres', tag: 'lat' });
  const load = new LoadProcess('submit.ts');
  const rows: Row[] = [];
  const details = [];
  try {
    await load.next('ready');
    const all: { p50: number; p99: number; stages: Record<string, number[]> }[] = [];
    for (let run = 0; run < runs; run++) {
      const base = (await finishedCount(s)).total;
      const r = await load.request<any>({ type: 'paced', url: s.url, token: s.token, pool: 'bench', count, ratePerS: rate, command: 'echo started' }, 'done', 600_000);
      await waitFor('all latency jobs finished', async () => (await finishedCount(s)).total >= base + count, 120_000, 100);
      const sent = new Map<number, { t: number; rtt: number }>((r.sent as any[]).map((x) => [x.id, x]));
      const ids = [...sent.keys()];
      const jobs = await s.server.db.query<any>(`select id, created_at, claimed_at, started_at, state from jobs where id = any($1::bigint[])`, [ids]);
      const logs = await s.server.db.query<any>(`select job_id, lines from job_logs where job_id = any($1::bigint[]) order by job_id, seq`, [ids]);
      const firstOut = new Map<number, number>();
      const firstSys = new Map<number, number>();
      for (const l of logs) {
        for (const line of l.lines as { t: number; s: string; m: string }[]) {
          if (line.s === 'o' && !firstOut.has(l.job_id)) firstOut.set(l.job_id, line.t);
          if (line.s === 's' && !firstSys.has(l.job_id)) firstSys.set(l.job_id, line.t);
        }
      }
      const agentSeen = new Map<number, number>();
      const agentSpawned = new Map<number, number>();
      for (const l of agentLogs(s)) {
        if (l.msg === 'job claimed' && sent.has(l.jobId)) agentSeen.set(l.jobId, l.time);
        if (l.msg === 'job started' && sent.has(l.jobId)) agentSpawned.set(l.jobId, l.time);
      }
      const stages: Record<string, number[]> = {
        'submit → stored (server created_at)': [],
        'stored → claimed (server claimed_at)': [],
        'claimed → agent has the job (agent log "job claimed")': [],
        'agent has it → work dir ready (first system log line)': [],
        'work dir ready → spawn() returned (agent log "job started")': [],
        'spawn() returned → first output line read': [],
        'submit → first output line (total)': [],
        'submit → server records running (started_at)': [],
      };
      const total: number[] = [];
      for (const j of jobs) {
        const c = sent.get(j.id)!;
        const out = firstOut.get(j.id);
        if (out === undefined || j.state !== 'succeeded') continue;
        const created = j.created_at.getTime();
        const claimed = j.claimed_at.getTime();
        const seen = agentSeen.get(j.id);
        const sys = firstSys.get(j.id);
        const spawned = agentSpawned.get(j.id);
        total.push(out - c.t);
        stages['submit → stored (server created_at)']!.push(created - c.t);
        stages['stored → claimed (server claimed_at)']!.push(claimed - created);
        if (seen !== undefined) stages['claimed → agent has the job (agent log "job claimed")']!.push(seen - claimed);
        if (seen !== undefined && sys !== undefined) stages['agent has it → work dir ready (first system log line)']!.push(sys - seen);
        if (sys !== undefined && spawned !== undefined) stages['work dir ready → spawn() returned (agent log "job started")']!.push(spawned - sys);
        if (spawned !== undefined) stages['spawn() returned → first output line read']!.push(out - spawned);
        stages['submit → first output line (total)']!.push(out - c.t);
        if (j.started_at) stages['submit → server records running (started_at)']!.push(j.started_at.getTime() - c.t);
      }
      if (total.length < count * 0.95) throw new Error(`only ${total.length} of ${count} jobs have a first output line`);
      const p50 = percentile(total, 50);
      const p99 = percentile(total, 99);
      all.push({ p50, p99, stages });
      log(`run ${run + 1}: ${total.length} jobs, p50 ${fmt(p50)} ms, p99 ${fmt(p99)} ms`);
    }
    const p50 = median(all.map((a) => a.p50));
    const p99 = median(all.map((a) => a.p99));
    rows.push({ metric: `submit → job process started, p50 (${fmt(count)} jobs per run)`, value: p50, unit: 'ms', target: '<= 5', met: targetAtMost(p50, 5), runs: all.map((a) => +a.p50.toFixed(1)) });
    rows.push({ metric: 'submit → job process started, p99', value: p99, unit: 'ms', target: '<= 25', met: targetAtMost(p99, 25), runs: all.map((a) => +a.p99.toFixed(1)) });
    // The floor: a bare Node process starting the same shell the same way, nothing of runyard.
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', resolve(import.meta.dirname, '../load/spawn-latency.ts'), quick ? '100' : '300', String(rate)], { env: { ...process.env, NODE_OPTIONS: '' } });
    const floor = JSON.parse(stdout.trim().split('\n').pop()!);
    rows.push({ metric: "reference: bare Node (no runyard), spawn() → first output line of `/bin/sh -c 'echo started'`, p50", value: floor.firstLine.p50, unit: 'ms', note: `p99 ${fmt(floor.firstLine.p99)} ms; spawn() itself p50 ${fmt(floor.spawn.p50)} ms, p99 ${fmt(floor.spawn.p99)} ms` });
    const mid = all.slice().sort((a, b) => a.p50 - b.p50)[all.length >> 1]!;
    details.push({
      title: 'Breakdown by stage (the median run; stages use the clocks of the client, server and agent, all on this machine; ms)',
      headers: ['stage', 'p50', 'p90', 'p99'],
      rows: Object.entries(mid.stages).map(([k, v]) => [k, +percentile(v, 50).toFixed(2), +percentile(v, 90).toFixed(2), +percentile(v, 99).toFixed(2)]),
    });
    return {
      rows,
      notes: [
        `Pool: 4 warm runners × 8 slots (real agents, process provider). Load: one job per request at ${rate} jobs/s from a child process (a moderate load: well under the throughput measured in section 2), ${fmt(count)} jobs per run, ${runs} runs; figures are medians of the runs' percentiles.`,
        'Method: job `echo started`; latency = the `t` the runner stamped on the job\'s first stdout line (epoch ms when it read the line) − the client\'s send time of the POST /api/v1/jobs. Server and agent timestamps are millisecond-resolution.',
      ],
      details,
    };
  } finally {
    await load.stop();
    await closeFleet(s);
  }
});
