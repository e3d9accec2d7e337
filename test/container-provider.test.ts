/*
 * The container provider against a real podman engine (Docker-compatible API on a private unix
 * socket): the provider contract, and the scheduler running jobs in container runners. Fails,
 * never skips, when podman is missing or broken.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { providerContract } from './helpers/provider-contract.js';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { startPodman, startService, type PodmanService } from './helpers/podman.js';
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
    const label = `runyard.pool=ctr`;
    assert.equal((await live(t, 'ctr')).length, 0, 'no runner before the first job');
    assert.equal(containers(`runyard.instance=${t.server.instanceId}`).length, 0, 'no container before the first job');

    const inside = 'if [ -f /opt/runyard/package.json ] && [ -f /run/.containerenv -o -f /.dockerenv ]; then echo "in-container"; fi; echo "job-$RUNYARD_JOB_ID done"';
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
        pools: [{ name: 'ctr', provider: 'container', image: podman.image, maxRunners: 1, idleTimeout: '1h' }],
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
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'ctr', command: `node -e "setTimeout(() => console.log('survived'), 3000)"` });
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

describe('control-plane restart adopts running container runners', () => {
  let db: { url: string; drop: () => Promise<void> };
  let t: TestServer | undefined;
  let instanceId = '';
  before(async () => {
    process.env.RUNYARD_CONTAINER_HOST = podman.host;
    db = await createPgDatabase();
  });
  after(async () => {
    delete process.env.RUNYARD_CONTAINER_HOST;
    if (instanceId) removeContainers(`runyard.instance=${instanceId}`);
    await t?.close();
    await db.drop();
  });

  test('a warm container runner survives the server going away and takes the next job after the restart', async () => {
    const port = await freePort();
    const config = {
      port,
      scheduler: { tick: '1s', offlineAfter: '1h', stuckAfter: '1h' },
      pools: [{ name: 'ctr', provider: 'container', image: podman.image, minIdle: 1, maxRunners: 1, idleTimeout: '1h' }],
    };
    t = await startTestServer({ dbUrl: db.url, config });
    instanceId = t.server.instanceId;
    const [warm] = await waitFor('a warm runner', async () => {
      const rows = await live(t!, 'ctr');
      return rows.length === 1 && rows[0]!.state === 'idle' ? rows : undefined;
    }, 40_000, 200);
    await t.close(); // container runners are not stopped with the server
    t = undefined;
    assert.equal(containers(`runyard.runner=${warm!.id}`).length, 1, 'the container outlived the server');

    t = await startTestServer({ dbUrl: db.url, config });
    assert.equal(t.server.instanceId, instanceId);
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'ctr', command: 'echo adopted' });
    const job = await waitFor('job on the adopted runner', async () => {
      const j = await jobOf(t!, body.job.id);
      return j.state === 'succeeded' ? j : undefined;
    }, 60_000, 200);
    assert.equal(job.runnerId, warm!.id, 'the runner from before the restart took the job');
    assert.deepEqual((await live(t, 'ctr')).map((r) => r.id), [warm!.id], 'no replacement was started');
  });
});
