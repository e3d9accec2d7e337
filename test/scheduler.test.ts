/*
 * The scheduler with the process provider: real `runyard agent` processes against a real server.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { createPgDatabase } from './helpers/db.js';
import { ManualClock } from '../src/lib/clock.js';
import { ServerProcess, agentPids, freePort } from './helpers/process-server.js';

const live = (t: TestServer, pool = 'local') =>
  t.server.db.query<{ id: string; state: string; registered_at: Date | null }>(`select id, state, registered_at from runners where pool = $1 and state <> 'terminated'`, [pool]);
const jobState = async (t: TestServer, id: number) => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;
const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('scale from zero, run, scale back to zero', () => {
  let t: TestServer;
  const clock = new ManualClock(Date.now());
  before(async () => {
    t = await startTestServer({
      clock,
      loops: false,
      config: { scheduler: { offlineAfter: '1h', stuckAfter: '2h' }, pools: [{ name: 'local', maxJobsPerRunner: 2, idleTimeout: '5m' }] },
    });
    await t.server.leader.check();
  });
  after(() => t.close());

  test('a job starts a runner from zero; after idleTimeout the runner is gone', async () => {
    const { body } = await t.api('POST', '/api/v1/jobs', { command: 'echo hi' });
    const done = await waitFor('job to succeed', async () => ((await jobState(t, body.job.id)).state === 'succeeded' ? true : undefined), 30_000);
    assert.ok(done);
    const runners = await live(t);
    assert.equal(runners.length, 1, 'exactly one runner was started');
    const pid = agentPids(t.dataDir)[0];
    assert.ok(pid, 'the runner is a live agent process');
    // Not yet idle long enough: stays.
    clock.advance(60_000);
    await t.server.maintenance.tick();
    assert.equal((await live(t)).length, 1);
    clock.advance(5 * 60_000);
    await t.server.maintenance.tick();
    await waitFor('runner terminated', async () => (await live(t)).length === 0, 20_000);
    await waitFor('agent process exited', () => !isAlive(pid), 20_000);
    const events = (await t.api('GET', `/api/v1/events?kind=runner&subject=${runners[0]!.id}&after=0`)).body.events;
    assert.ok(events.some((e: any) => e.to_state === 'draining' || /idle for/.test(e.reason ?? '')), 'the scale-down is recorded with its reason');
  });
});

describe('warm pool', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: { pools: [{ name: 'local', minIdle: 2, maxRunners: 4 }] } });
  });
  after(() => t.close());

  test('minIdle 2 keeps two runners ready; a job starts without a cold start', async () => {
    await waitFor('two idle runners', async () => (await live(t)).filter((r) => r.state === 'idle').length === 2, 30_000);
    const warm = new Set((await live(t)).map((r) => r.id));
    const { body } = await t.api('POST', '/api/v1/jobs', { command: 'echo warm' });
    const job = await waitFor('job done', async () => {
      const j = await jobState(t, body.job.id);
      return j.state === 'succeeded' ? j : undefined;
    }, 20_000);
    assert.ok(warm.has(job.runnerId), 'the job ran on a runner that was already warm');
    await waitFor('two idle runners again', async () => (await live(t)).filter((r) => r.state === 'idle').length >= 2, 30_000);
  });
});

describe('scheduled warm pool', () => {
  let t: TestServer;
  // Monday 2026-01-05, 07:59 in Berlin (UTC+1): a minute before the window opens
  const clock = new ManualClock(Date.parse('2026-01-05T06:59:00Z'));
  before(async () => {
    t = await startTestServer({
      clock,
      loops: false,
      config: {
        scheduler: { offlineAfter: '24h', stuckAfter: '24h' },
        pools: [{ name: 'local', maxRunners: 4, idleTimeout: '5m', minIdleSchedule: { timeZone: 'Europe/Berlin', windows: [{ days: 'mon-fri', from: '08:00', to: '19:00', minIdle: 2 }] } }],
      },
    });
    await t.server.leader.check();
  });
  after(() => t.close());

  test('weekdays 08:00–19:00 Europe/Berlin keep two warm; before and after, none', async () => {
    await t.server.maintenance.tick();
    await t.server.scheduler.idle();
    assert.equal((await live(t)).length, 0, '07:59: nothing warm yet');
    clock.advance(2 * 60_000);
    await t.server.maintenance.tick();
    await waitFor('two idle runners at 08:01', async () => (await live(t)).filter((r) => r.state === 'idle').length === 2, 30_000);
    clock.advance(5 * 3_600_000); // 13:01: idle for hours, past idleTimeout, but the window keeps them
    await t.server.maintenance.tick();
    await t.server.scheduler.idle();
    assert.equal((await live(t)).filter((r) => r.state === 'idle').length, 2, '13:01: still two warm');
    clock.advance(6 * 3_600_000); // 19:01: the window has closed
    await t.server.maintenance.tick();
    await waitFor('warm runners scaled down after 19:00', async () => (await live(t)).length === 0, 30_000);
  });
});

describe('burst on a capped pool', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ store: 'postgres', config: { pools: [{ name: 'local', maxRunners: 5, maxJobsPerRunner: 4 }] } });
  });
  after(() => t.close());

  test('200 jobs never exceed 5 runners or 20 running jobs, and all finish', async () => {
    const jobs = Array.from({ length: 200 }, (_, i) => ({ command: `echo job-${i}` }));
    const { body } = await t.api('POST', '/api/v1/jobs/batch', { jobs });
    assert.equal(body.jobs.length, 200);
    let maxRunners = 0;
    let maxRunning = 0;
    await waitFor('all 200 jobs finished', async () => {
      const [r] = await t.server.db.query(`select count(*)::int as n from runners where state <> 'terminated'`);
      const [j] = await t.server.db.query(`select count(*) filter (where state in ('claimed','running'))::int as active,
                                                  count(*) filter (where state = 'succeeded')::int as ok,
                                                  count(*) filter (where state in ('failed','cancelled','timed_out'))::int as bad from jobs`);
      maxRunners = Math.max(maxRunners, r!.n);
      maxRunning = Math.max(maxRunning, j!.active);
      assert.equal(j!.bad, 0, 'no job failed');
      return j!.ok === 200;
    }, 90_000, 10);
    assert.ok(maxRunners <= 5, `at most 5 runners (saw ${maxRunners})`);
    assert.ok(maxRunning <= 20, `at most 20 jobs at once (saw ${maxRunning})`);
    assert.ok(maxRunners >= 2, `scaled out beyond one runner (saw ${maxRunners})`);
  });
});

describe('replacement and recovery', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ store: 'postgres', config: { scheduler: { tick: '500ms' }, pools: [{ name: 'local', maxRunners: 3, maxJobsPerRunner: 1 }] } });
  });
  after(() => t.close());

  test('a pool config change drains the running runner without failing its job and replaces it', async () => {
    const { body } = await t.api('POST', '/api/v1/jobs', { command: 'sleep 1; echo old-runner' });
    const running = await waitFor('job running', async () => {
      const j = await jobState(t, body.job.id);
      return j.state === 'running' ? j : undefined;
    }, 30_000);
    const pool = (await t.api('GET', '/api/v1/pools/local')).body.pool.config;
    const r = await t.api('PUT', '/api/v1/pools/local', { ...pool, env: { VERSION: '2' } });
    assert.equal(r.body.pool.configChanged, true);
    const { body: second } = await t.api('POST', '/api/v1/jobs', { command: 'echo $VERSION' });
    const first = await waitFor('first job done', async () => {
      const j = await jobState(t, body.job.id);
      return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
    }, 30_000);
    assert.equal(first.state, 'succeeded', 'the job on the stale runner finished normally');
    const next = await waitFor('second job done', async () => {
      const j = await jobState(t, second.job.id);
      return j.state === 'succeeded' ? j : undefined;
    }, 30_000);
    assert.notEqual(next.runnerId, running.runnerId, 'the new job ran on a replacement runner');
    const logs = (await t.api('GET', `/api/v1/jobs/${second.job.id}/logs`)).body.lines.map((l: any) => l.m);
    assert.ok(logs.includes('2'), 'the replacement has the new config');
    await waitFor('stale runner terminated', async () => {
      const [row] = await t.server.db.query('select state from runners where id = $1', [running.runnerId]);
      return row.state === 'terminated';
    }, 30_000);
  });

  test('kill -9 of a runner mid-job: the job is retried and succeeds', async () => {
    const { body } = await t.api('POST', '/api/v1/jobs', { command: 'if [ -z "$RUNYARD_SECOND" ]; then sleep 30; fi; echo survived' });
    const running = await waitFor('job running', async () => {
      const j = await jobState(t, body.job.id);
      return j.state === 'running' ? j : undefined;
    }, 30_000);
    const pid = agentPids(t.dataDir).find((p) => {
      try {
        return readEnviron(p).includes(`RUNYARD_RUNNER_ID=${running.runnerId}`);
      } catch {
        return false;
      }
    });
    assert.ok(pid, 'found the agent process running the job');
    // Make the retry fast: the second attempt must not sleep.
    await t.server.db.query(`update jobs set env = '{"RUNYARD_SECOND":"1"}' where id = $1`, [body.job.id]);
    process.kill(pid!, 'SIGKILL');
    const done = await waitFor('job retried and succeeded', async () => {
      const j = await jobState(t, body.job.id);
      return j.state === 'succeeded' ? j : undefined;
    }, 60_000);
    assert.equal(done.attempt, 2, 'second attempt');
    assert.notEqual(done.runnerId, running.runnerId);
    const events = (await t.api('GET', `/api/v1/jobs/${body.job.id}/events`)).body.events;
    assert.ok(events.some((e: any) => e.toState === 'queued' && /runner/.test(e.reason)), 'requeue recorded with its reason');
  });
});

function readEnviron(pid: number): string {
  return readFileSync(`/proc/${pid}/environ`, 'utf8');
}

describe('control plane crash and failover (PostgreSQL, real server processes)', () => {
  let db: { url: string; drop: () => Promise<void> };
  let dataDir: string;
  const servers: ServerProcess[] = [];
  before(async () => {
    db = await createPgDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'runyard-crash-'));
  });
  after(async () => {
    for (const s of servers) await s.kill9();
    for (const pid of agentPids(dataDir)) process.kill(pid, 'SIGKILL');
    await db.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  // Short heartbeat and offline windows: after the leader dies, its runners (which only know its
  // address) go offline within seconds and the new leader replaces them.
  const yaml = `scheduler: { tick: 1s, offlineAfter: 4s }\nrunner: { heartbeatInterval: 1s }\npools:\n  - { name: local, maxRunners: 3, maxJobsPerRunner: 2 }\n`;

  test('kill -9 of the control plane mid-burst, then restart: no job lost, no orphan', async () => {
    const port = await freePort();
    const a = new ServerProcess({ dbUrl: db.url, dataDir, port, yaml });
    servers.push(a);
    await a.start();
    await a.api('POST', '/api/v1/jobs/batch', { jobs: Array.from({ length: 40 }, (_, i) => ({ command: `sleep 0.2; echo ${i}` })) });
    await waitFor('some jobs done', async () => (await a.api('GET', '/api/v1/jobs?state=succeeded&limit=1000')).jobs.length >= 5, 30_000);
    await a.kill9();
    const b = new ServerProcess({ dbUrl: db.url, dataDir, port, yaml });
    servers.push(b);
    await b.start();
    await waitFor('all 40 jobs succeeded', async () => (await b.api('GET', '/api/v1/jobs?state=succeeded&limit=1000')).jobs.length === 40, 90_000, 100);
    const bad = (await b.api('GET', '/api/v1/jobs?state=failed,cancelled,timed_out&limit=1000')).jobs;
    assert.equal(bad.length, 0, 'no job failed');
    // Every agent process still running belongs to a runner the store knows as live.
    const liveIds = new Set((await b.api('GET', '/api/v1/runners')).runners.map((r: any) => r.id));
    for (const pid of agentPids(dataDir)) {
      const id = /RUNYARD_RUNNER_ID=([0-9a-f-]+)/.exec(readEnviron(pid))?.[1];
      assert.ok(id && liveIds.has(id), `agent ${pid} (${id}) is known to the store`);
    }
    await b.stop();
  });

  test('two control planes on one database: one leader; the other takes over when it dies', async () => {
    const [pa, pb] = [await freePort(), await freePort()];
    const a = new ServerProcess({ dbUrl: db.url, dataDir, port: pa, yaml });
    const b = new ServerProcess({ dbUrl: db.url, dataDir, port: pb, yaml });
    servers.push(a, b);
    await a.start();
    await b.start();
    await a.api('POST', '/api/v1/jobs', { command: 'echo via-a' });
    await waitFor('job via a done', async () => (await a.api('GET', '/api/v1/jobs?state=succeeded&limit=1000')).jobs.some((j: any) => j.commands[0] === 'echo via-a'), 30_000);
    await a.kill9();
    const { job } = await b.api('POST', '/api/v1/jobs', { command: 'echo via-b' });
    await waitFor('job via b done after failover', async () => (await b.api('GET', `/api/v1/jobs/${job.id}`)).job.state === 'succeeded', 60_000, 100);
    assert.match(b.output, /became scheduler leader/);
    await b.stop();
  });
});

describe('ephemeral pools and failed starts', () => {
  test('an ephemeral pool gives each job a fresh runner, and the runners go away', async () => {
    const t = await startTestServer({ config: { pools: [{ name: 'local', ephemeral: true, maxRunners: 3 }] } });
    try {
      const { body } = await t.api('POST', '/api/v1/jobs/batch', { jobs: [{ command: 'echo a' }, { command: 'echo b' }, { command: 'echo c' }] });
      const ids: number[] = body.jobs.map((j: any) => j.id);
      const done = await waitFor('three jobs done', async () => {
        const js = await Promise.all(ids.map((id) => jobState(t, id)));
        return js.every((j) => j.state === 'succeeded') ? js : undefined;
      }, 60_000);
      assert.equal(new Set(done.map((j) => j.runnerId)).size, 3, 'three different runners');
      await waitFor('ephemeral runners gone', async () => (await live(t)).length === 0, 30_000);
    } finally {
      await t.close();
    }
  });

  test('a runner that cannot start is replaced with exponential backoff, not in a loop', async () => {
    const clock = new ManualClock(Date.now());
    // A runner whose process dies at once, before it can register (a broken image's analogue).
    const t = await startTestServer({ clock, loops: false, config: { pools: [{ name: 'local', env: { NODE_OPTIONS: '--require /nonexistent/runyard-broken.js' } }] } });
    try {
      await t.server.leader.check();
      await t.api('POST', '/api/v1/jobs', { command: 'echo never' });
      const exited = async (n: number) =>
        waitFor(`${n} failed starts`, async () => {
          const [r] = await t.server.db.query(`select count(*)::int as n from runners where state = 'terminated' and state_reason like '%before registering%'`);
          return r!.n >= n;
        }, 20_000);
      await t.server.scheduler.idle();
      await exited(1);
      const starts = async () => (await t.server.db.query(`select count(*)::int as n from runners`))[0]!.n;
      await t.server.maintenance.tick();
      assert.equal(await starts(), 1, 'no new start within the first backoff (5s)');
      clock.advance(5_000);
      await t.server.maintenance.tick();
      await exited(2);
      clock.advance(5_000);
      await t.server.maintenance.tick();
      assert.equal(await starts(), 2, 'second backoff is 10s: still waiting after 5s');
      clock.advance(5_000);
      await t.server.maintenance.tick();
      await exited(3);
      assert.equal(await starts(), 3);
      const [job] = await t.server.db.query(`select state from jobs`);
      assert.equal(job.state, 'queued', 'the job waits; it is not lost or failed');
    } finally {
      await t.close();
    }
  });
});

describe('scheduler wakes', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ loops: false, config: { pools: [{ name: 'local', maxRunners: 0 }] } });
    await t.server.leader.check();
  });
  after(() => t.close());

  test('busy/idle changes are paced to one pass; a job no runner takes starts a pass at once', async () => {
    const s = t.server.scheduler;
    const passes: number[] = [];
    let release!: () => void;
    let hold: Promise<void> | undefined = new Promise<void>((r) => (release = r));
    s.pass = async (now: number) => {
      passes.push(now);
      const h = hold; // only the first pass is held open
      hold = undefined;
      await h;
      return [];
    };
    s.wake();
    assert.equal(passes.length, 1, 'an urgent wake starts a pass at once');
    for (let i = 0; i < 20; i++) t.server.ctx.bus.emit('runners-changed', 'load');
    release();
    await s.idle();
    assert.equal(passes.length, 1, 'load changes during a pass do not chain passes');
    await waitFor('the paced pass', () => passes.length === 2);
    await s.idle();
    assert.equal(passes.length, 2, 'twenty load changes, one paced pass');

    // Scale from zero: a submitted job that no parked claim took wakes the scheduler at once.
    const submit = await t.api('POST', '/api/v1/jobs', { command: 'echo hi' });
    assert.equal(submit.status, 201);
    assert.equal(passes.length, 3, 'the pass started before the submit was answered');
    await s.idle();
  });
});
