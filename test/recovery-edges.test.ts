/*
 * Edge cases of recovery and runner identity: each was once a defect found in review.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './helpers/server.js';
import { ProtocolRunner } from './helpers/http.js';
import { ManualClock } from '../src/lib/clock.js';
import { recoverJobs } from '../src/queue/recover.js';

describe('recovery edges', () => {
  let t: TestServer;
  const clock = new ManualClock(Date.now());
  before(async () => {
    // No runners of the scheduler's own (maxRunners 0): the protocol runners here are the fleet.
    t = await startTestServer({ clock, loops: false, config: { pools: [{ name: 'local', maxRunners: 0, maxJobsPerRunner: 2 }] } });
  });
  after(() => t.close());
  const runnerRow = async (id: string) => (await t.server.db.query('select state, idle_since from runners where id = $1', [id]))[0];
  // Each test has a pool of its own, so jobs of one test never reach the runners of another.
  let pool = 'local';
  let poolSeq = 0;
  beforeEach(async () => {
    pool = `edge-${++poolSeq}`;
    assert.equal((await t.api('POST', '/api/v1/pools', { name: pool, maxRunners: 0, maxJobsPerRunner: 2 })).status, 200);
  });
  const submit = async (body: Record<string, unknown> = {}) => (await t.api('POST', '/api/v1/jobs', { command: 'true', pool, ...body })).body.job;

  test('a runner whose jobs were recovered is idle again, so it can be scaled down', async () => {
    const r = new ProtocolRunner(t);
    await r.register(pool);
    const job = await submit();
    const [claimed] = await r.claim(1);
    assert.equal((await runnerRow(r.id)).state, 'busy');
    await t.server.db.transaction((tx) => recoverJobs(tx, clock.now(), [claimed.id], 'test', { runnerId: r.id }));
    const row = await runnerRow(r.id);
    assert.equal(row.state, 'idle');
    assert.ok(row.idle_since, 'its idle countdown started');
    assert.equal((await t.api('GET', `/api/v1/jobs/${job.id}`)).body.job.state, 'queued');
  });

  test('recovery only touches a job still held by the runner it was read from', async () => {
    const a = new ProtocolRunner(t);
    const b = new ProtocolRunner(t);
    await a.register(pool);
    await b.register(pool);
    const job = await submit();
    const [first] = await a.claim(1);
    await t.server.db.transaction((tx) => recoverJobs(tx, clock.now(), [first.id], 'a lost', { runnerId: a.id }));
    const [second] = await b.claim(1);
    assert.equal(second.id, job.id);
    // A late recovery for runner A (ids read before B claimed) must leave B's claim alone.
    const moved = await t.server.db.transaction((tx) => recoverJobs(tx, clock.now(), [job.id], 'stale read', { runnerId: a.id }));
    assert.deepEqual(moved, []);
    assert.equal((await r2(t, job.id)).runnerId, b.id);
    assert.equal((await b.result(second, 0)).status, 200);
  });

  test('a claim never picked up is requeued without using up an attempt', async () => {
    const r = new ProtocolRunner(t);
    await r.register(pool);
    const job = await submit({ maxAttempts: 1 });
    const [claimed] = await r.claim(1);
    assert.equal(claimed.attempt, 1);
    clock.advance(31_000);
    // The runner's heartbeat does not list the job: its claim response was lost.
    const hb = await r.call('POST', `/api/v1/runners/${r.id}/heartbeat`, { version: 'test', jobs: [] });
    assert.equal(hb.status, 200);
    const after = await r2(t, job.id);
    assert.equal(after.state, 'queued', 'not failed: it never ran');
    assert.equal(after.attempt, 0, 'the attempt was given back');
    const [again] = await r.claim(1);
    assert.equal(again.attempt, 1);
    assert.equal(again.startedAt, null, 'a new claim starts with no start time');
    await r.result(again, 0);
  });

  test('retrying a finished job that had secrets is refused: they were discarded', async () => {
    const r = new ProtocolRunner(t);
    await r.register(pool);
    const job = await submit({ secrets: { TOKEN: 's3cr3t-value' } });
    const [claimed] = await r.claim(1);
    assert.deepEqual(r.openSecrets(claimed), { TOKEN: 's3cr3t-value' });
    await r.result(claimed, 1);
    const retry = await t.api('POST', `/api/v1/jobs/${job.id}/retry`);
    assert.equal(retry.status, 409);
    assert.match(retry.body.error.message, /secrets \(TOKEN\).*submit it again/);
  });

  test("an operator's disable survives going offline and re-registering", async () => {
    const r = new ProtocolRunner(t);
    await r.register(pool);
    assert.equal((await t.api('POST', `/api/v1/runners/${r.id}/disable`)).status, 200);
    // Heartbeats stop: the runner goes offline; then they resume.
    clock.advance(120_000);
    await t.server.maintenance.tick();
    assert.equal((await runnerRow(r.id)).state, 'offline');
    const hb = await r.call('POST', `/api/v1/runners/${r.id}/heartbeat`, { version: 'test', jobs: [] });
    assert.equal(hb.body.state, 'disabled');
    assert.equal((await runnerRow(r.id)).state, 'disabled');
    // And after an agent restart (same identity, same key).
    const tok = await t.api('POST', '/api/v1/tokens', { pool });
    const again = await t.api('POST', '/api/v1/runners/register', { id: r.id, name: 'again', version: 'test', publicKey: r.keys.publicKey }, { token: tok.body.secret });
    assert.equal(again.status, 201);
    assert.equal(again.body.runner.state, 'disabled');
    assert.equal((await t.api('POST', `/api/v1/runners/${r.id}/enable`)).body.runner.state, 'idle');
  });

  test('a pool-wide registration token cannot take over a live runner with another key', async () => {
    const victim = new ProtocolRunner(t);
    await victim.register(pool);
    const thief = new ProtocolRunner(t);
    const tok = await t.api('POST', '/api/v1/tokens', { pool });
    const r = await t.api('POST', '/api/v1/runners/register', { id: victim.id, name: 'thief', version: 'test', publicKey: thief.keys.publicKey }, { token: tok.body.secret });
    assert.equal(r.status, 409);
    assert.equal(r.body.error.field, 'id');
    const hb = await victim.call('POST', `/api/v1/runners/${victim.id}/heartbeat`, { version: 'test', jobs: [] });
    assert.equal(hb.status, 200, "the victim's credential still works");
  });

  test('out-of-range integers, NUL characters and bad escapes are 400s, not 500s', async () => {
    const r = new ProtocolRunner(t);
    await r.register(pool);
    await submit();
    const [claimed] = await r.claim(1);
    const huge = await r.call('POST', `/api/v1/jobs/${claimed.id}/logs`, { attempt: claimed.attempt, seq: 2 ** 40, lines: [] });
    assert.equal(huge.status, 400);
    assert.equal(huge.body.error.field, 'seq');
    const exit = await r.call('POST', `/api/v1/jobs/${claimed.id}/result`, { attempt: claimed.attempt, exitCode: 2 ** 33 });
    assert.equal(exit.status, 400);
    assert.equal((await r.result(claimed, 0)).status, 200);
    const nul = await t.api('POST', '/api/v1/jobs', { command: 'echo a\u0000b' });
    assert.equal(nul.status, 400);
    assert.equal(nul.body.error.field, 'command');
    const esc = await t.api('GET', '/api/v1/artifacts/%E0%A4%A');
    assert.equal(esc.status, 400);
    assert.equal((await t.api('GET', '/healthz', undefined, { token: null })).status, 200, 'the server is still up');
  });
});

async function r2(t: TestServer, id: number) {
  return (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;
}
