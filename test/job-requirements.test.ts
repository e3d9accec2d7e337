/*
 * What a job may ask for at submit: its own base image (only on container pools that allow it)
 * and CPU or memory (only what a class size, and its pool's class, offers). A request that
 * cannot be met is refused with a 422 naming the field, and nothing is queued.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { buildSpec } from '../src/cli/jobs.js';
import { baseAllowed, resolveJobImage } from '../src/app/images.js';
import { poolSchema } from '../src/config/schema.js';
import { UnprocessableError } from '../src/lib/errors.js';

describe('job requirements at submit', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({
      loops: false,
      config: {
        classSizes: { small: { cpu: 0.5, memoryMb: 1024 }, large: { cpu: 4, memoryMb: 8192 } },
        // maxRunners 0: nothing is ever started, so no engine is needed
        pools: [
          { name: 'local', maxRunners: 0 },
          { name: 'fixed', provider: 'container', image: 'runner:1', class: 'small', maxRunners: 0 },
          { name: 'dyn', provider: 'container', image: 'runner:1', dynamicImages: ['debian:*', 'registry.example/ci/*'], maxRunners: 0 },
          { name: 'any', provider: 'container', image: 'runner:1', dynamicImages: true, maxRunners: 0 },
        ],
      },
    });
  });
  after(() => t.close());

  const jobCount = async () => Number((await t.server.db.query<{ n: number }>('select count(*)::int as n from jobs'))[0]!.n);
  async function refused(body: unknown, path: string, field: string, message: RegExp) {
    const before = await jobCount();
    const r = await t.api('POST', path, body);
    assert.equal(r.status, 422, JSON.stringify(r.body));
    assert.equal(r.body.error.field, field, JSON.stringify(r.body));
    assert.match(r.body.error.message, message);
    assert.equal(await jobCount(), before, 'nothing was queued');
  }

  test('an image on a pool that cannot run it is refused, naming the field and what to do', async () => {
    await refused({ pool: 'local', image: 'debian:12', command: 'true' }, '/api/v1/jobs', 'image', /pool local runs process runners.*container pool with dynamicImages/);
    await refused({ pool: 'fixed', image: 'debian:12', command: 'true' }, '/api/v1/jobs', 'image', /pool fixed does not allow dynamic images \(set dynamicImages/);
    await refused({ pool: 'dyn', image: 'alpine:3', command: 'true' }, '/api/v1/jobs', 'image', /not among pool dyn's allowed bases: debian:\*, registry.example\/ci\/\*/);
    await refused({ pool: 'any', image: 'Not An Image!', command: 'true' }, '/api/v1/jobs', 'image', /not an image reference/);
    // one bad spec refuses the whole batch
    await refused({ jobs: [{ pool: 'dyn', image: 'debian:12', command: 'true' }, { pool: 'dyn', image: 'ubuntu:24.04', command: 'true' }] }, '/api/v1/jobs/batch', 'jobs[1].image', /allowed bases/);
  });

  test('allowed images are queued with their base; the pool image itself means no dynamic image', async () => {
    const a = await t.api('POST', '/api/v1/jobs', { pool: 'dyn', image: 'debian:12-slim', command: 'true' });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    assert.equal(a.body.job.image, 'debian:12-slim');
    const b = await t.api('POST', '/api/v1/jobs', { pool: 'dyn', image: 'registry.example/ci/node:20', command: 'true' });
    assert.equal(b.body.job.image, 'registry.example/ci/node:20');
    const c = await t.api('POST', '/api/v1/jobs', { pool: 'fixed', image: 'runner:1', command: 'true' });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.equal(c.body.job.image, null);
    const d = await t.api('POST', '/api/v1/jobs', { pool: 'any', image: 'quay.io/org/tool@sha256:' + 'a'.repeat(64), command: 'true' });
    assert.equal(d.status, 201, JSON.stringify(d.body));
  });

  test('CPU or memory beyond every class size, or beyond the pool class, is refused', async () => {
    await refused({ pool: 'local', cpu: 8, command: 'true' }, '/api/v1/jobs', 'cpu', /needs 8 CPU, more than any class size allows \(small: 0.5 CPU, 1024 MB; large: 4 CPU, 8192 MB\)/);
    await refused({ pool: 'local', cpu: 1, memoryMb: 16384, command: 'true' }, '/api/v1/jobs', 'memoryMb', /more than any class size/);
    await refused({ pool: 'fixed', memoryMb: 2048, command: 'true' }, '/api/v1/jobs', 'memoryMb', /more than pool fixed's class small \(0.5 CPU, 1024 MB\); submit it to a pool of a larger class/);
    const r = await t.api('POST', '/api/v1/jobs', { pool: 'fixed', cpu: 0.5, memoryMb: 512, command: 'true' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const bad = await t.api('POST', '/api/v1/jobs', { pool: 'local', cpu: -1, command: 'true' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'cpu');
  });

  test('a queued job whose base the pool stopped allowing fails with the reason instead of waiting', async () => {
    const pool = { name: 'shift', provider: 'container', image: 'runner:1', dynamicImages: true, maxRunners: 1 };
    assert.equal((await t.api('PUT', '/api/v1/pools/shift', pool)).status, 200);
    const { body } = await t.api('POST', '/api/v1/jobs', { pool: 'shift', image: 'debian:12', command: 'true' });
    assert.equal((await t.api('PUT', '/api/v1/pools/shift', { ...pool, dynamicImages: false })).status, 200);
    await t.server.scheduler.pass(Date.now());
    const job = await waitFor('job failed', async () => {
      const j = (await t.api('GET', `/api/v1/jobs/${body.job.id}`)).body.job;
      return j.state === 'failed' ? j : undefined;
    });
    assert.match(job.error, /runner image for base debian:12 could not be prepared: pool shift no longer allows dynamic image debian:12/);
  });

  test('a pool config that allows dynamic images off the container provider is refused', async () => {
    const r = await t.api('PUT', '/api/v1/pools/proc', { name: 'proc', dynamicImages: true });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error.field, 'dynamicImages');
  });
});

describe('image rules and CLI flags', () => {
  test('allowed bases: true, globs, and false', () => {
    assert.equal(baseAllowed(true, 'anything:1'), true);
    assert.equal(baseAllowed(false, 'debian:12'), false);
    assert.equal(baseAllowed(undefined, 'debian:12'), false, 'a pool stored before the field existed');
    assert.equal(baseAllowed(['debian:*'], 'debian:12'), true);
    assert.equal(baseAllowed(['debian:*'], 'evil/debian:12'), false, 'a glob matches the whole reference');
    assert.equal(baseAllowed(['registry.example/ci/*'], 'registry.example/ci/node:20'), true);
    assert.equal(baseAllowed(['node:20'], 'node:2'), false);
  });

  test('resolveJobImage keeps the base, maps the pool image to null', () => {
    const pool = poolSchema.parse({ name: 'p', provider: 'container', image: 'runner:1', dynamicImages: true });
    assert.equal(resolveJobImage(pool, undefined), null);
    assert.equal(resolveJobImage(pool, 'runner:1'), null);
    assert.equal(resolveJobImage(pool, 'debian:12'), 'debian:12');
    assert.throws(() => resolveJobImage(pool, 'UPPER/case:1'), UnprocessableError);
  });

  test('--cpu and --memory-mb are checked before anything is sent', () => {
    assert.deepEqual(buildSpec(['true'], { cpu: '0.5', memoryMb: '512', image: 'debian:12' }), { command: 'true', cpu: 0.5, memoryMb: 512, image: 'debian:12' });
    assert.throws(() => buildSpec(['true'], { cpu: 'two' }), /--cpu must be a number of CPUs above 0/);
    assert.throws(() => buildSpec(['true'], { cpu: '0' }), /--cpu/);
    assert.throws(() => buildSpec(['true'], { memoryMb: '1.5' }), /--memory-mb/);
  });
});
