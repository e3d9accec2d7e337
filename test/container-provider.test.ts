/*
 * The container provider against a real podman engine (Docker-compatible API on a private unix
 * socket): the provider contract, and the scheduler running jobs in container runners. Fails,
 * never skips, when podman is missing or broken.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { providerContract } from './helpers/provider-contract.js';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { buildBaseImage, startPodman, startService, type PodmanService } from './helpers/podman.js';
import { ServerProcess } from './helpers/process-server.js';
import { DYNAMIC_IMAGE_REPO } from '../src/providers/container/dynamic-images.js';
import { ContainerProvider, ContainerEngineError } from '../src/providers/container/container-provider.js';
import { silentLogger } from '../src/lib/logger.js';
import { poolSchema } from '../src/config/schema.js';
import { createPgDatabase } from './helpers/db.js';
import { freePort } from './helpers/process-server.js';

const podman = await startPodman();
after(() => podman.close());

/** Containers with a label, as `podman ps -a` sees them (id, status text). */
function containers(label: string): { id: string; state: string }[] {
  return podman
    .cli('ps', '-a', '--filter', `label=${label}`, '--format', '{{.ID}} {{.State}}')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const [id, state] = l.split(/\s+/);
      return { id: id!, state: state! };
    });
}
function removeContainers(label: string) {
  for (const c of containers(label)) {
    try {
      podman.cli('rm', '-f', '-t', '0', c.id);
    } catch {
      // gone already
    }
  }
}

test('the runner image is available', (t) => {
  t.diagnostic(`image ${podman.image}: ${podman.imageBuildMs ? `built in ${podman.imageBuildMs} ms` : 'cached'}`);
  assert.match(podman.cli('images', '--format', '{{.Repository}}:{{.Tag}}'), new RegExp(podman.image.replace(/[.:/]/g, '\\$&')));
});

providerContract('container', {
  make: (t) => new ContainerProvider({ host: podman.host, instanceId: t.server.instanceId, log: silentLogger }),
  // provider stays `process` with maxRunners 0: the server itself starts nothing in this suite
  poolOverrides: { image: podman.image },
});

const live = (t: TestServer, pool: string) =>
  t.server.db.query<{ id: string; state: string }>(`select id, state from runners where pool = $1 and state <> 'terminated'`, [pool]);
const jobOf = async (t: TestServer, id: number) => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;

describe('container runners under the scheduler', () => {
  let t: TestServer;
  before(async () => {
    process.env.RUNYARD_CONTAINER_HOST = podman.host;
    t = await startTestServer({
      config: {
        scheduler: { tick: '1s', offlineAfter: '1h', stuckAfter: '1h', stopGrace: '5s' },
        classSizes: { tiny: { cpu: 0.5, memoryMb: 256 } },
        pools: [{ name: 'ctr', provider: 'container', image: podman.image, class: 'tiny', maxRunners: 1, maxJobsPerRunner: 1, idleTimeout: '4s' }],
      },
    });
  });
  after(async () => {
    delete process.env.RUNYARD_CONTAINER_HOST;
    removeContainers(`runyard.instance=${t.server.instanceId}`);
    await t.close();
  });

  test('a job scales the pool from zero, runs inside a container with the class limits, a second reuses it, then back to zero', async (tc) => {
    // Scoped to this server: other test runs on the same engine may have pools named ctr too.
    const label = `runyard.instance=${t.server.instanceId}`;
    assert.equal((await live(t, 'ctr')).length, 0, 'no runner before the first job');
    assert.equal(containers(`runyard.instance=${t.server.instanceId}`).length, 0, 'no container before the first job');

    const inside = 'if [ -f /opt/runyard/app/package.json ] && [ -f /run/.containerenv -o -f /.dockerenv ]; then echo "in-container"; fi; echo "job-$RUNYARD_JOB_ID done"';
    const { body: first } = await t.api('POST', '/api/v1/jobs', { pool: 'ctr', command: inside });
    assert.ok(first.job?.id, JSON.stringify(first));
    const j1 = await waitFor('first job succeeded', async () => {
      const j = await jobOf(t, first.job.id);
      assert.ok(!['failed', 'cancelled', 'timed_out'].includes(j.state), `job ${j.state}: ${JSON.stringify(j)}`);
      return j.state === 'succeeded' ? j : undefined;
    }, 60_000, 100);
    // the second job right away: the warm runner takes it
    const { body: second } = await t.api('POST', '/api/v1/jobs', { pool: 'ctr', command: inside });
    const logs = JSON.stringify((await t.api('GET', `/api/v1/jobs/${first.job.id}/logs`)).body.lines);
    assert.match(logs, /in-container/, `the job ran inside the container: ${logs}`);

    const [runner] = await t.server.db.query<{ id: string; provider: string; provider_ref: string; created_at: Date; registered_at: Date }>(
      `select id, provider, provider_ref, created_at, registered_at from runners where id = $1`,
      [j1.runnerId],
    );
    assert.equal(runner!.provider, 'container');
    assert.match(runner!.provider_ref, /^container:[0-9a-f]{12}@[0-9a-f]{12}$/);
    tc.diagnostic(`runner row created -> registered: ${runner!.registered_at.getTime() - runner!.created_at.getTime()} ms`);

    const [c] = containers(`runyard.runner=${runner!.id}`);
    assert.ok(c, 'the runner is a container labelled with its id');
    const inspect = JSON.parse(podman.cli('inspect', c.id))[0];
    assert.equal(inspect.HostConfig.NanoCpus, 500_000_000, 'cpu limit from the class size');
    assert.equal(inspect.HostConfig.Memory, 256 * 1024 * 1024, 'memory limit from the class size');
    assert.equal(inspect.Config.Labels['runyard.pool'], 'ctr');
    assert.equal(inspect.Config.Labels['runyard.instance'], t.server.instanceId);
    assert.equal(inspect.Config.Labels['runyard.runner'], runner!.id);
    assert.ok(inspect.Config.Labels['runyard.owner']);

    const j2 = await waitFor('second job succeeded', async () => {
      const j = await jobOf(t, second.job.id);
      return j.state === 'succeeded' ? j : undefined;
    }, 30_000, 100);
    assert.equal(j2.runnerId, j1.runnerId, 'the warm container runner was reused');
    assert.equal(containers(label).length, 1, 'one container served both jobs');

    // idle for 4s: scaled down, the container stopped and removed
    await waitFor('runner scaled down', async () => (await live(t, 'ctr')).length === 0, 40_000, 200);
    await waitFor('container removed', () => containers(`runyard.instance=${t.server.instanceId}`).length === 0, 20_000, 200);
  });
});

describe('container engine unreachable', () => {
  let t: TestServer;
  let late: PodmanService | undefined;
  const socket = join(tmpdir(), `runyard-podman-late-${process.pid}.sock`);
  before(async () => {
    process.env.RUNYARD_CONTAINER_HOST = `unix://${socket}`;
    t = await startTestServer({
      config: {
        scheduler: { tick: '1s', offlineAfter: '1h', stuckAfter: '1h', stopGrace: '5s' },
        pools: [
          { name: 'ctr', provider: 'container', image: podman.image, maxRunners: 1, idleTimeout: '1h' },
          { name: 'ctrdyn', provider: 'container', image: podman.image, dynamicImages: true, maxRunners: 1, idleTimeout: '1h' },
        ],
      },
    });
  });
  after(async () => {
    delete process.env.RUNYARD_CONTAINER_HOST;
    removeContainers(`runyard.instance=${t.server.instanceId}`);
    await t.close();
    await late?.stop();
  });

  test('the provider names the unreachable engine', async () => {
    const p = new ContainerProvider({ host: `unix://${socket}`, instanceId: 'x', log: silentLogger });
    await assert.rejects(p.list(), (err: Error) => err instanceof ContainerEngineError && err.message.includes(`container engine unreachable at unix://${socket}`));
    await assert.rejects(
      p.create({ runnerId: '00000000-0000-4000-8000-000000000000', name: 'n', pool: poolSchema.parse({ name: 'p', provider: 'container', image: podman.image }), serverUrl: t.url, registrationToken: 'x', instanceId: 'x' }),
      /container engine unreachable at unix:\/\//,
    );
    await p.close();
  });

  test('a job waits while the engine is unreachable (the failure says why), and runs once it is back', async () => {
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'ctr', command: 'echo after-outage' });
    // a job on its own base waits too: an unreachable engine is no reason to fail it
    const { body: dyn } = await t.api('POST', '/api/v1/jobs', { pool: 'ctrdyn', image: 'localhost/runyard-test-base-a:1', command: 'true' });
    const dynLogs = await waitFor('the dynamic job told why it waits', async () => {
      const text = (await t.api('GET', `/api/v1/jobs/${dyn.job.id}/logs`)).body.lines.map((l: any) => l.m).join('\n');
      return /container engine unreachable at unix:\/\/.*the job waits/.test(text) ? text : undefined;
    }, 20_000, 100);
    assert.ok(dynLogs);
    assert.equal((await jobOf(t, dyn.job.id)).state, 'queued', 'the dynamic job is still queued');
    assert.equal((await t.api('POST', `/api/v1/jobs/${dyn.job.id}/cancel`)).status, 200);
    const failed = await waitFor('a failed start recorded', async () => {
      const rows = await t.server.db.query<{ id: string }>(`select id from runners where pool = 'ctr' and state = 'terminated'`);
      return rows[0];
    }, 20_000, 100);
    const events = (await t.api('GET', `/api/v1/events?kind=runner&subject=${failed.id}&after=0`)).body.events;
    assert.ok(
      events.some((e: any) => /container engine unreachable at unix:\/\/.*runyard-podman-late/.test(e.reason ?? '')),
      `the reason names the engine: ${JSON.stringify(events.map((e: any) => e.reason))}`,
    );
    assert.equal((await jobOf(t, body.job.id)).state, 'queued', 'the job is still queued');

    late = await startService(socket, podman.env);
    const job = await waitFor('job succeeded once the engine is back', async () => {
      const j = await jobOf(t, body.job.id);
      return j.state === 'succeeded' ? j : undefined;
    }, 60_000, 200);
    assert.equal(job.attempt ?? 1, 1, 'the job was never lost or retried');
  });

  test('an engine outage while a job runs loses nothing: the job finishes, the runner is kept', async () => {
    const [runner] = await live(t, 'ctr');
    assert.ok(runner, 'the runner from the previous test is still up');
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'ctr', command: 'sleep 3; echo survived' });
    await waitFor('job running', async () => (await jobOf(t, body.job.id)).state === 'running', 20_000, 100);
    await late!.stop();
    // reconcile cannot list the engine now; it must not take that for "every runner is gone"
    await t.server.maintenance.tick();
    const job = await waitFor('job finished during the outage', async () => {
      const j = await jobOf(t, body.job.id);
      return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
    }, 30_000, 100);
    assert.equal(job.state, 'succeeded');
    assert.equal(job.runnerId, runner.id);
    assert.deepEqual((await live(t, 'ctr')).map((r) => r.id), [runner.id], 'the runner was not given up');
    late = await startService(socket, podman.env);
    await t.server.maintenance.tick();
    assert.deepEqual((await live(t, 'ctr')).map((r) => r.id), [runner.id], 'still adopted once the engine is back');
    const [c] = containers(`runyard.runner=${runner.id}`);
    assert.equal(podman.cli('inspect', '--format', '{{.State.Status}}', c!.id).trim(), 'running');
  });
});

describe('kill -9 of the control plane with container runners', () => {
  let db: { url: string; drop: () => Promise<void> };
  let dataDir = '';
  const servers: ServerProcess[] = [];
  let instanceId = '';
  before(async () => {
    db = await createPgDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'runyard-ctr-crash-'));
  });
  after(async () => {
    for (const s of servers) await s.kill9();
    if (instanceId) removeContainers(`runyard.instance=${instanceId}`);
    await db.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('restart adopts the live runner (its running job finishes once), removes an orphan container', async () => {
    const port = await freePort();
    const yaml = [
      'scheduler: { tick: 1s, offlineAfter: 1h, stuckAfter: 1h }',
      'runner: { heartbeatInterval: 1s }',
      'pools:',
      `  - { name: ctr, provider: container, image: ${JSON.stringify(podman.image)}, minIdle: 1, maxRunners: 1, idleTimeout: 1h }`,
      '',
    ].join('\n');
    const env = { RUNYARD_CONTAINER_HOST: podman.host };
    const a = new ServerProcess({ dbUrl: db.url, dataDir, port, yaml, env });
    servers.push(a);
    await a.start();
    const warm = await waitFor('a warm container runner', async () => {
      const rs = (await a.api('GET', '/api/v1/runners')).runners;
      return rs.length === 1 && rs[0].state === 'idle' ? rs[0] : undefined;
    }, 60_000, 200);
    const [c] = containers(`runyard.runner=${warm.id}`);
    instanceId = JSON.parse(podman.cli('inspect', c!.id))[0].Config.Labels['runyard.instance'];

    const { job } = await a.api('POST', '/api/v1/jobs', { pool: 'ctr', command: 'sleep 2; echo survived the crash' });
    await waitFor('job running', async () => (await a.api('GET', `/api/v1/jobs/${job.id}`)).job.state === 'running', 30_000, 50);
    await a.kill9();

    // While no control plane runs, a container of this instance appears that the store never
    // knew (a start whose row was lost): the restart must remove it, not adopt it.
    const stray = new ContainerProvider({ host: podman.host, instanceId, log: silentLogger });
    const strayId = randomUUID();
    await stray.create({
      runnerId: strayId,
      name: 'stray',
      pool: poolSchema.parse({ name: 'ctr', provider: 'container', image: podman.image }),
      serverUrl: `http://127.0.0.1:${port}`,
      registrationToken: 'ryd_reg_not-a-real-token',
      instanceId,
    });
    await stray.close();
    assert.equal(containers(`runyard.runner=${strayId}`).length, 1);
    assert.equal(containers(`runyard.runner=${warm.id}`).length, 1, 'the runner container outlived the kill');

    const b = new ServerProcess({ dbUrl: db.url, dataDir, port, yaml, env });
    servers.push(b);
    await b.start();
    const done = await waitFor('the job finished', async () => {
      const j = (await b.api('GET', `/api/v1/jobs/${job.id}`)).job;
      return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
    }, 60_000, 100);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.attempt, 1, 'run once: not requeued while its runner lived');
    assert.equal(done.runnerId, warm.id);
    await waitFor('the orphan container removed', () => containers(`runyard.runner=${strayId}`).length === 0, 30_000, 200);

    const { job: next } = await b.api('POST', '/api/v1/jobs', { pool: 'ctr', command: 'echo adopted' });
    const j2 = await waitFor('next job on the adopted runner', async () => {
      const j = (await b.api('GET', `/api/v1/jobs/${next.id}`)).job;
      return j.state === 'succeeded' ? j : undefined;
    }, 60_000, 100);
    assert.equal(j2.runnerId, warm.id, 'the runner from before the crash took it');
    const liveRunners = (await b.api('GET', '/api/v1/runners')).runners.map((r: any) => r.id);
    assert.deepEqual(liveRunners, [warm.id], 'no replacement was started, the stray never registered');
    await b.stop();
  });
});

describe('dynamic images', () => {
  let t: TestServer;
  let baseA = '';
  before(async () => {
    process.env.RUNYARD_CONTAINER_HOST = podman.host;
    baseA = buildBaseImage(podman.cli, 'a');
    // a build from scratch every run: drop runner images built from the test bases before
    for (const line of podman.cli('images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}', DYNAMIC_IMAGE_REPO).split('\n').filter(Boolean)) {
      try {
        podman.cli('rmi', '-f', line.split(' ')[1]!);
      } catch {
        // in use by a leftover container: removed with it later
      }
    }
    t = await startTestServer({
      config: {
        scheduler: { tick: '1s', offlineAfter: '1h', stuckAfter: '1h', stopGrace: '5s' },
        pools: [
          { name: 'dyn', provider: 'container', image: podman.image, dynamicImages: ['localhost/runyard-test-*'], maxRunners: 3, idleTimeout: '1h' },
        ],
      },
    });
  });
  after(async () => {
    delete process.env.RUNYARD_CONTAINER_HOST;
    removeContainers(`runyard.instance=${t.server.instanceId}`);
    await t.close();
  });

  // the bases have a shell and nothing else: builtins only
  const onBase = 'if [ -f /etc/runyard-test-base ]; then read b < /etc/runyard-test-base; echo "base=$b"; else echo base=none; fi; [ -e /usr/bin/node ] || echo "no node on the base"';

  test('a job on its own base builds the runner image once; the next reuses it; images never mix', async (tc) => {
    const { body: own } = await t.api('POST', '/api/v1/jobs', { pool: 'dyn', command: onBase });
    const { body: first } = await t.api('POST', '/api/v1/jobs', { pool: 'dyn', image: baseA, command: onBase });
    assert.equal(first.job.image, baseA);
    assert.equal(own.job.image, null, 'no image: the pool image');
    const j1 = await waitFor('job on base a succeeded', async () => {
      const j = await jobOf(t, first.job.id);
      assert.ok(!['failed', 'cancelled', 'timed_out'].includes(j.state), `job ${j.state}: ${j.error}`);
      return j.state === 'succeeded' ? j : undefined;
    }, 120_000, 200);
    const logs1 = (await t.api('GET', `/api/v1/jobs/${first.job.id}/logs`)).body.lines.map((l: any) => l.m).join('\n');
    assert.match(logs1, /building runner image localhost\/runyard-dynamic:[0-9a-f]+ from base/, `build progress in the job's log:\n${logs1}`);
    assert.match(logs1, /runner image for .* built in/);
    assert.match(logs1, /^base=a$/m, 'the job ran on the base it named');
    assert.match(logs1, /no node on the base/);

    const j0 = await waitFor('job on the pool image succeeded', async () => {
      const j = await jobOf(t, own.job.id);
      return j.state === 'succeeded' ? j : undefined;
    }, 60_000, 200);
    const logs0 = (await t.api('GET', `/api/v1/jobs/${own.job.id}/logs`)).body.lines.map((l: any) => l.m).join('\n');
    assert.match(logs0, /^base=none$/m);
    assert.notEqual(j0.runnerId, j1.runnerId, 'runners of different images never mix');
    const rows = await t.server.db.query<{ id: string; image: string | null }>(`select id, image from runners where id = any($1::uuid[])`, [[j0.runnerId, j1.runnerId]]);
    assert.deepEqual(Object.fromEntries(rows.map((r) => [r.id, r.image])), { [j0.runnerId]: null, [j1.runnerId]: baseA });
    const [c] = containers(`runyard.runner=${j1.runnerId}`);
    const inspect = JSON.parse(podman.cli('inspect', c!.id))[0];
    assert.match(inspect.ImageName ?? inspect.Config.Image, /runyard-dynamic/);
    assert.equal(inspect.Config.Labels['runyard.base'], baseA);

    // the warm runner of base a takes the next job of base a; no second build
    const { body: second } = await t.api('POST', '/api/v1/jobs', { pool: 'dyn', image: baseA, command: onBase });
    const j2 = await waitFor('second job on base a succeeded', async () => {
      const j = await jobOf(t, second.job.id);
      return j.state === 'succeeded' ? j : undefined;
    }, 60_000, 200);
    assert.equal(j2.runnerId, j1.runnerId, 'the warm runner of that image was reused');
    const logs2 = (await t.api('GET', `/api/v1/jobs/${second.job.id}/logs`)).body.lines.map((l: any) => l.m).join('\n');
    assert.doesNotMatch(logs2, /building runner image/);

    // a fresh runner of base a (the warm one terminated) starts from the cached image
    await t.api('POST', `/api/v1/runners/${j1.runnerId}/terminate`);
    await waitFor('runner of base a gone', async () => (await live(t, 'dyn')).every((r) => r.id !== j1.runnerId), 30_000, 200);
    const { body: third } = await t.api('POST', '/api/v1/jobs', { pool: 'dyn', image: baseA, command: onBase });
    const j3 = await waitFor('third job succeeded', async () => {
      const j = await jobOf(t, third.job.id);
      return j.state === 'succeeded' ? j : undefined;
    }, 60_000, 200);
    assert.notEqual(j3.runnerId, j1.runnerId);
    const metrics = (await t.api('GET', '/metrics')).body as string;
    assert.match(metrics, /runyard_image_build_seconds_count\{provider="container",outcome="built"\} 1\b/, 'built exactly once');
    assert.match(metrics, /runyard_runner_create_seconds_count\{provider="container"\} [3-9]/);
    const built = podman.cli('images', '--format', '{{.Repository}}:{{.Tag}}', DYNAMIC_IMAGE_REPO).split('\n').filter(Boolean);
    assert.equal(built.length, 1, `one runner image for base a: ${built.join(', ')}`);
    tc.diagnostic(`runner image ${built[0]}`);
  });

  test('a base the engine cannot get fails its jobs with the engine message, once, without looping', async () => {
    const missing = 'localhost/runyard-test-missing:1';
    const { body } = await t.api('POST', '/api/v1/jobs/batch', { jobs: [{ pool: 'dyn', image: missing, command: 'true' }, { pool: 'dyn', image: missing, command: 'true' }] });
    const ids: number[] = body.jobs.map((j: any) => j.id);
    const failed = await waitFor('both jobs failed', async () => {
      const js = await Promise.all(ids.map((id) => jobOf(t, id)));
      return js.every((j) => j.state === 'failed') ? js : undefined;
    }, 60_000, 200);
    for (const j of failed) assert.match(j.error, /runner image for base localhost\/runyard-test-missing:1 could not be prepared: .*(pull|refused|registry|connect)/i, j.error);
    const logs = (await t.api('GET', `/api/v1/jobs/${ids[0]}/logs`)).body.lines.map((l: any) => l.m).join('\n');
    assert.match(logs, /could not be prepared/);
    assert.equal((await t.server.db.query(`select id from runners where image = $1`, [missing])).length, 0, 'no runner was started for it');
    await t.server.maintenance.tick();
    await t.server.scheduler.idle();
    const events = (await t.api('GET', '/api/v1/events?kind=scheduler&subject=dyn')).body.events.filter((e: any) => /could not be prepared/.test(e.reason ?? ''));
    assert.equal(events.length, 1, 'one failure, not a retry loop');
  });
});
