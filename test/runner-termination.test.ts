/*
 * One terminate path (issue 13, hole 8): a runner the scheduler terminates is refused at once on
 * every runner call, on the server that terminated it and on another server sharing the database
 * whose auth cache still holds its credential. Its tokens, launch token included, are revoked.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPgDatabase } from './helpers/db.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { ProtocolRunner } from './helpers/http.js';
import { moveRunner } from '../src/store/queries/runner-transitions.js';

describe('runner termination', () => {
  let a: TestServer;
  let b: TestServer;
  let drop: () => Promise<void>;
  const pool = 'term';
  before(async () => {
    const db = await createPgDatabase();
    drop = db.drop;
    // Two control planes on one database; loops off so the test drives the scheduler itself.
    a = await startTestServer({ dbUrl: db.url, loops: false, config: { pools: [{ name: pool, maxRunners: 0 }] } });
    b = await startTestServer({ dbUrl: db.url, loops: false, config: { pools: [{ name: pool, maxRunners: 0 }] } });
    const art = await a.api('POST', '/api/v1/artifacts?name=dist.tar', undefined, { raw: 'not really a tar', headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(art.status, 201, JSON.stringify(art.body));
    assert.equal((await a.api('PUT', `/api/v1/pools/${pool}`, { name: pool, maxRunners: 0, distribution: 'dist.tar', maxJobsPerRunner: 2 })).status, 200);
  });
  after(async () => {
    await b?.close();
    await a?.close();
    await drop?.();
  });

  /** Every call a runner makes, with its credential, on server `t`. */
  function calls(t: TestServer, r: ProtocolRunner, job: { id: number; attempt: number }) {
    const as = (method: string, path: string, body?: unknown) => t.api(method, path, body, { token: r.credential });
    return {
      heartbeat: () => as('POST', `/api/v1/runners/${r.id}/heartbeat`, { version: "test", jobs: [{ id: job.id, attempt: job.attempt }] }),
      claim: () => as('POST', `/api/v1/runners/${r.id}/claim`, { max: 1, waitMs: 0 }),
      start: () => as('POST', `/api/v1/jobs/${job.id}/start`, { attempt: job.attempt }),
      logs: () => as('POST', `/api/v1/jobs/${job.id}/logs`, { attempt: job.attempt, seq: 1, lines: [{ t: Date.now(), s: 'o', m: 'x' }] }),
      result: () => as('POST', `/api/v1/jobs/${job.id}/result`, { attempt: job.attempt, exitCode: 0 }),
      artifact: () => as('GET', '/api/v1/artifacts/dist.tar'),
      control: () => as('GET', `/api/v1/runners/${r.id}/control`),
    };
  }

  for (const where of ['the same server', 'another server'] as const) {
    test(`terminated by the scheduler: refused at once on ${where}, with a warm auth cache`, async () => {
      const served = where === 'the same server' ? a : b;
      const r = new ProtocolRunner(served);
      await r.register(pool);
      assert.equal((await a.api('POST', '/api/v1/jobs', { pool, command: 'sleep 100' })).status, 201);
      const [job] = await r.claim(1);
      assert.ok(job, 'the runner holds a job');
      const c = calls(served, r, job);
      // Warm the serving server's cache with calls that succeed.
      assert.equal((await c.heartbeat()).status, 200);
      assert.equal((await c.artifact()).status, 200);
      assert.equal((await c.start()).status, 200);

      // The scheduler (on server a) ends it: offline first, as maintenance would, then terminate.
      assert.ok((await moveRunner(a.server.db, Date.now(), r.id, 'offline', 'no heartbeat (test)')).moved);
      await a.server.scheduler.terminate(r.id, 'offline runner terminated (test)');
      const row = (await a.server.db.query('select state from runners where id = $1', [r.id]))[0];
      assert.equal(row.state, 'terminated');

      for (const [name, call] of Object.entries(c)) {
        const res = await call();
        assert.ok(res.status === 410 || res.status === 401, `${name} after termination: ${res.status} ${JSON.stringify(res.body)}`);
      }
      const live = await a.server.db.query(`select count(*)::int as n from tokens where runner_id = $1 and revoked_at is null`, [r.id]);
      assert.equal(live[0].n, 0, 'no token of the runner stays valid');
      const j = (await a.api('GET', `/api/v1/jobs/${job.id}`)).body.job;
      assert.equal(j.state, 'queued', 'its job went back to the queue');
    });
  }
});
