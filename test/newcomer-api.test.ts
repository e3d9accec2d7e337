/*
 * Issue 19 over HTTP and the CLI: what a pool can never run is refused where it is asked for
 * (pool apply, submit: 422 naming the field); what may recover shows its reason on the waiting
 * job (API, `jobs show`, once in `--wait`); a distribution that is not in the store is refused,
 * and a job whose distribution vanished fails with the reason. A real server over PGlite; the
 * container pool points at an engine socket that does not exist (an engine that is down).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { cleanupClis, cliFor, FakeRunner, spawnCli } from './helpers/cli.js';
import { setWaitingReason } from '../src/store/queries/pools.js';

let t: TestServer;
let cli: ReturnType<typeof cliFor>;
const sock = join(mkdtempSync(join(tmpdir(), 'runyard-no-engine-')), 'engine.sock');

before(async () => {
  process.env.RUNYARD_CONTAINER_HOST = `unix://${sock}`;
  try {
    t = await startTestServer({
      loops: false,
      config: {
        pools: [
          { name: 'local', provider: 'process', maxRunners: 0 },
          { name: 'boxes', provider: 'container', image: 'runyard-runner:missing', maxRunners: 2 },
        ],
      },
    });
  } finally {
    delete process.env.RUNYARD_CONTAINER_HOST;
  }
  cli = cliFor(t);
});

after(async () => {
  cleanupClis();
  await t?.close();
  rmSync(join(sock, '..'), { recursive: true, force: true });
});

const job = async (id: number) => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;

describe('newcomer: nothing waits forever without saying why', () => {
  test('3. a pool whose provider this server cannot run is refused at apply, naming provider and what to do', async () => {
    const k8s = await t.api('POST', '/api/v1/pools', { name: 'k8s', provider: 'kubernetes', image: 'runyard-runner', maxRunners: 1 });
    assert.equal(k8s.status, 422, JSON.stringify(k8s.body));
    assert.equal(k8s.body.error.field, 'provider');
    assert.match(k8s.body.error.message, /pool k8s uses provider kubernetes, which this server cannot run/);
    // a list: the field names the pool, and nothing of the list is applied
    const list = await t.api('POST', '/api/v1/pools', { pools: [{ name: 'fine', maxRunners: 0 }, { name: 'tasks', provider: 'ecs', image: 'runyard-runner', ecs: { cluster: 'ci', launchType: 'EC2' } }] });
    assert.equal(list.status, 422);
    assert.equal(list.body.error.field, 'pools[1].provider');
    assert.equal((await t.api('GET', '/api/v1/pools/fine')).status, 404);
    assert.equal((await t.api('PUT', '/api/v1/pools/k8s', { name: 'k8s', provider: 'kubernetes', image: 'runyard-runner' })).status, 422);
  });

  test('3. a container pool on a server without a container engine configured is refused, saying to set RUNYARD_CONTAINER_HOST; so is a submit to it', async () => {
    const container = t.server.providers.get('container')!;
    // the server as started without RUNYARD_CONTAINER_HOST / DOCKER_HOST and no container pool in its config
    t.server.providers.delete('container');
    try {
      const r = await t.api('POST', '/api/v1/pools', { name: 'ctr', provider: 'container', image: 'runyard-runner' });
      assert.equal(r.status, 422);
      assert.equal(r.body.error.field, 'provider');
      assert.match(r.body.error.message, /start the server with RUNYARD_CONTAINER_HOST=unix:\/\/\/run\/podman\/podman\.sock \(or DOCKER_HOST\)/);
      const before = (await t.api('GET', '/api/v1/jobs?pool=boxes')).body.jobs.length;
      const submit = await t.api('POST', '/api/v1/jobs', { pool: 'boxes', command: 'true' });
      assert.equal(submit.status, 422);
      assert.equal(submit.body.error.field, 'pool');
      assert.match(submit.body.error.message, /pool boxes uses provider container, which this server cannot run/);
      const viaCli = await cli(['jobs', 'submit', '--pool', 'boxes', 'true']);
      assert.equal(viaCli.code, 2);
      assert.match(viaCli.stderr, /which this server cannot run: start the server with RUNYARD_CONTAINER_HOST=.*\(field: pool\)/);
      assert.equal((await t.api('GET', '/api/v1/jobs?pool=boxes')).body.jobs.length, before);
    } finally {
      t.server.providers.set('container', container);
    }
  });

  test('3. a job waiting on an engine that is down shows why: on the job, in jobs show, once in --wait; cleared when a start works', async () => {
    const wait = spawnCli(['jobs', 'submit', '--pool', 'boxes', '--wait', 'echo', 'hi'], { server: t.url, token: t.token, timeoutMs: 60_000 });
    const id = await waitFor('the job', async () => (await t.api('GET', '/api/v1/jobs?pool=boxes&state=queued')).body.jobs[0]?.id);
    assert.equal((await job(id)).waitingReason, undefined);
    // several scheduler passes: every start fails the same way
    for (let i = 0; i < 3; i++) await t.server.scheduler.pass(Date.now() + i * 600_000);
    const j = await job(id);
    assert.equal(j.state, 'queued');
    assert.match(j.waitingReason, new RegExp(`^runners cannot be started: container engine unreachable at .*engine\\.sock.*; runyard keeps trying, with backoff$`));
    const show = await cli(['jobs', 'show', String(id)]);
    assert.match(show.stdout, /^waiting:\s+runners cannot be started: container engine unreachable at /m);
    await waitFor('the reason in --wait', () => wait.stderr().includes('[runyard] waiting: runners cannot be started: container engine unreachable'), 10_000);
    // the stream goes on a while: the same reason is not printed again
    await t.server.scheduler.pass(Date.now() + 3_600_000);
    const events = (await t.api('GET', '/api/v1/events?kind=scheduler&subject=boxes')).body.events;
    assert.equal(events.filter((e: any) => /^jobs wait: runners cannot be started/.test(e.reason)).length, 1, 'recorded once, when it began');
    // a runner that takes the job ends the wait; the reason goes once a start works
    await setWaitingReason(t.server.db, 'boxes', null);
    assert.equal((await job(id)).waitingReason, undefined);
    const runner = await FakeRunner.register(t, 'boxes');
    const claimed = await runner.claimOne();
    await runner.start(claimed);
    await runner.log(claimed, 1, [['o', 'hi']]);
    await runner.result(claimed, 0);
    const r = await wait.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi\n');
    assert.equal(r.stderr.match(/\[runyard\] waiting:/g)?.length, 1, r.stderr);
  });

  test('4. a distribution that is not in the store is refused at apply; a job whose distribution vanished fails with the reason', async () => {
    const missing = await t.api('POST', '/api/v1/pools', { name: 'shipped', maxRunners: 1, distribution: 'app.tar.gz' });
    assert.equal(missing.status, 422);
    assert.equal(missing.body.error.field, 'distribution');
    assert.match(missing.body.error.message, /distribution app\.tar\.gz of pool shipped is not in the artifact store; push it first with `runyard artifacts push app\.tar\.gz`/);
    assert.equal((await t.api('GET', '/api/v1/pools/shipped')).status, 404);
    const push = await fetch(`${t.url}/api/v1/artifacts?name=app.tar.gz`, { method: 'POST', headers: { authorization: `Bearer ${t.token}` }, body: Buffer.from('not really a tarball') });
    assert.equal(push.status, 201);
    assert.equal((await t.api('POST', '/api/v1/pools', { name: 'shipped', maxRunners: 0, distribution: 'app.tar.gz' })).status, 200);
    const queued = (await t.api('POST', '/api/v1/jobs', { pool: 'shipped', command: 'cat app.txt' })).body.job;

    // the artifact goes away behind the server's back (a restored backup, a manual cleanup)
    await t.server.db.query(`delete from artifacts where name = 'app.tar.gz'`);
    // no runner registers without it
    await assert.rejects(FakeRunner.register(t, 'shipped'), (e: any) => e.status === 422);
    assert.equal((await t.api('POST', '/api/v1/pools', { name: 'shipped', maxRunners: 1, distribution: 'app.tar.gz' })).status, 422);
    // the scheduler fails the waiting job instead of starting runners for it
    await t.server.db.query(`update pools set config = jsonb_set(config, '{maxRunners}', '1') where name = 'shipped'`);
    await t.server.scheduler.pass(Date.now());
    const failed = await job(queued.id);
    assert.equal(failed.state, 'failed');
    assert.match(failed.error, /distribution app\.tar\.gz of pool shipped is no longer in the artifact store; push it again/);
    assert.equal((await t.api('GET', '/api/v1/runners?pool=shipped')).body.runners.length, 0, 'no runner started');
    // and a new submit is refused at once
    const again = await t.api('POST', '/api/v1/jobs', { pool: 'shipped', command: 'true' });
    assert.equal(again.status, 422);
    assert.equal(again.body.error.field, 'pool');
  });
});
