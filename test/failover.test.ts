/*
 * HA failover of runners (issue 13, hole 12): two `runyard up` processes on one PostgreSQL; the
 * leader, which started every runner, is killed with SIGKILL mid-burst. Its runners learn the
 * survivor's URL from the servers table, move there, keep their jobs running and deliver their
 * results; the survivor adopts them. Jobs record their executions in a file outside every work
 * dir, so runs are counted from outside the agents.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './helpers/server.js';
import { createPgDatabase } from './helpers/db.js';
import { ServerProcess, agentPids, freePort } from './helpers/process-server.js';

let db: { url: string; drop: () => Promise<void> };
let dataDir: string;
let tmp: string;
const servers: ServerProcess[] = [];

before(async () => {
  db = await createPgDatabase();
  dataDir = mkdtempSync(join(tmpdir(), 'runyard-failover-'));
  tmp = mkdtempSync(join(tmpdir(), 'runyard-failover-runs-'));
});

after(async () => {
  for (const s of servers) await s.kill9();
  for (const pid of agentPids(dataDir)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await db.drop();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});

/** start, a tick every 100 ms for `ticks`, end: one line each, with the job, attempt and time. */
function recordingJob(file: string, ticks: number): string {
  const line = (what: string) => `echo "${what} $RUNYARD_JOB_ID $RUNYARD_ATTEMPT $(date +%s%N)" >> "${file}"`;
  return `${line('start')}; i=0; while [ $i -lt ${ticks} ]; do ${line('tick')}; sleep 0.1; i=$((i+1)); done; ${line('end')}`;
}

interface Run {
  attempt: number;
  start: number;
  last: number;
  ended: boolean;
}

function runs(file: string): Map<number, Run[]> {
  const out = new Map<number, Run[]>();
  const open = new Map<string, Run>();
  if (!existsSync(file)) return out;
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    const [what, job, attempt, ns] = l.split(' ');
    if (!ns) continue;
    const at = Number(BigInt(ns) / 1_000_000n);
    const key = `${job}:${attempt}`;
    if (what === 'start') {
      const r = { attempt: Number(attempt), start: at, last: at, ended: false };
      open.set(key, r);
      out.set(Number(job), [...(out.get(Number(job)) ?? []), r]);
    } else {
      const r = open.get(key);
      if (!r) continue;
      r.last = Math.max(r.last, at);
      r.ended ||= what === 'end';
    }
  }
  return out;
}

test('kill -9 of the HA leader: its runners move to the survivor, jobs keep running and finish there, none lost, none run twice at once', async () => {
  const file = join(tmp, 'runs.log');
  const yaml = `scheduler: { tick: 500ms, offlineAfter: 10s }\nrunner: { heartbeatInterval: 500ms, pingInterval: 1s }\npools:\n  - { name: local, maxRunners: 2, maxJobsPerRunner: 3 }\n`;
  const [pa, pb] = [await freePort(), await freePort()];
  const a = new ServerProcess({ dbUrl: db.url, dataDir, port: pa, yaml });
  servers.push(a);
  await a.start();
  await waitFor('a leads', () => /became scheduler leader/.test(a.output), 20_000);
  const b = new ServerProcess({ dbUrl: db.url, dataDir, port: pb, yaml });
  servers.push(b);
  await b.start();

  const { jobs } = await a.api('POST', '/api/v1/jobs/batch', { jobs: Array.from({ length: 6 }, () => ({ command: recordingJob(file, 40), maxAttempts: 5 })) });
  const ids: number[] = jobs.map((j: any) => j.id);
  await waitFor('jobs running on the leader\'s runners', () => [...runs(file).values()].filter((r) => r[0]!.last > r[0]!.start).length >= 4, 60_000, 100);
  const before = (await b.api('GET', '/api/v1/runners')).runners.map((r: any) => r.id).sort();
  assert.ok(before.length > 0 && before.length <= 2, JSON.stringify(before));
  // Every runner the leader started knows the survivor too.
  const beforePids = agentPids(dataDir);
  assert.equal(beforePids.length, before.length);
  const logOf = (id: string) => readFileSync(join(dataDir, 'logs', 'runners', `${id}.log`), 'utf8');
  await waitFor('every runner knows the survivor', () => before.every((id: string) => logOf(id).split('\n').some((l) => l.includes('"servers known"') && l.includes(b.url))), 20_000, 100);

  await a.kill9();
  const killedAt = Date.now();
  await waitFor('all jobs succeeded through the survivor', async () => {
    const states = await Promise.all(ids.map(async (id) => (await b.api('GET', `/api/v1/jobs/${id}`)).job));
    return states.every((j) => j.state === 'succeeded') && states;
  }, 90_000, 200);
  const recovered = Date.now() - killedAt;

  // None lost (all succeeded above), none run twice at once, none run twice at all: the runs
  // that were under way when the leader died finished on their first attempt.
  const seen = runs(file);
  const runnerLog = () =>
    readdirSync(join(dataDir, 'logs', 'runners'))
      .flatMap((f) => readFileSync(join(dataDir, 'logs', 'runners', f), 'utf8').split('\n'))
      .filter((l) => /switching|lease|heartbeat|server/.test(l))
      .map((l) => l.slice(0, 400))
      .join('\n');
  for (const id of ids) {
    const r = seen.get(id) ?? [];
    assert.equal(r.length, 1, `job ${id} ran once: ${JSON.stringify(r)} (killed at ${killedAt})\n${runnerLog()}`);
    assert.equal(r[0]!.attempt, 1);
    assert.equal(r[0]!.ended, true);
    assert.equal((await b.api('GET', `/api/v1/jobs/${id}`)).job.attempt, 1);
  }

  // Adopted, not replaced: the same runners are live on the survivor, their processes alive.
  const after = (await b.api('GET', '/api/v1/runners')).runners;
  assert.deepEqual(after.map((r: any) => r.id).sort(), before);
  assert.ok(after.every((r: any) => ['idle', 'busy'].includes(r.state)), JSON.stringify(after.map((r: any) => r.state)));
  assert.deepEqual(agentPids(dataDir).sort(), beforePids.sort());
  const runnerLogs = readdirSync(join(dataDir, 'logs', 'runners')).map((f) => readFileSync(join(dataDir, 'logs', 'runners', f), 'utf8')).join('\n');
  const switched = runnerLogs.split('\n').filter((l) => l.includes('server unreachable; switching to another server'));
  assert.ok(switched.length >= before.length, 'every runner switched servers');
  assert.ok(switched.every((l) => JSON.parse(l).to === b.url), switched.join('\n'));

  // New work after the failover is served by the adopted runners.
  const { job } = await b.api('POST', '/api/v1/jobs', { command: 'echo after-failover' });
  await waitFor('a job submitted after the failover succeeds', async () => (await b.api('GET', `/api/v1/jobs/${job.id}`)).job.state === 'succeeded', 30_000, 100);
  assert.ok(before.includes((await b.api('GET', `/api/v1/jobs/${job.id}`)).job.runnerId));
  console.log(`leader killed with 6 jobs under way on ${before.length} runners: all done ${recovered}ms later through the survivor`);
  await b.stop();
});
