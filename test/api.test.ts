/*
 * The HTTP API end to end, over a real socket, on PGlite and PostgreSQL: auth and scopes, bad
 * input (right 4xx, field named, nothing changed), and the happy paths of every user resource,
 * with a job driven to its end through the runner protocol. One server per store: each test
 * makes its own jobs (and pools where it counts them), so they do not interfere.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { STORES } from './helpers/db.js';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { countAuthEvents, openSse, ProtocolRunner, sendChunked, storeSnapshot } from './helpers/http.js';

const MAX_BODY = 64 * 1024;
const MAX_BATCH = 20;
const CONFIG = {
  limits: { maxBodyBytes: MAX_BODY, maxBatch: MAX_BATCH },
  // maxRunners 0: the scheduler never starts runners; the tests play the runner themselves.
  pools: [
    { name: 'local', maxJobsPerRunner: 4, maxRunners: 0 },
    { name: 'other', maxRunners: 0 },
  ],
};

/** A pool of its own for a test that plays the runner: its claims see only its own jobs. */
async function freshPool(t: TestServer, name: string): Promise<string> {
  const r = await t.api('PUT', `/api/v1/pools/${name}`, { name, maxRunners: 0 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return name;
}

function assertError(r: { status: number; body: any }, status: number, field?: string, message?: RegExp) {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(typeof r.body?.error?.code, 'string', JSON.stringify(r.body));
  assert.equal(typeof r.body.error.message, 'string');
  assert.ok(r.body.error.message.length > 0);
  if (field !== undefined) assert.equal(r.body.error.field, field, JSON.stringify(r.body));
  if (message) assert.match(r.body.error.message, message);
  assert.doesNotMatch(JSON.stringify(r.body), /at .*\.(ts|js):\d+/, 'no stack trace leaked');
}

for (const store of STORES) {
  describe(`API over HTTP on ${store}`, () => {
    let t: TestServer;
    before(async () => {
      t = await startTestServer({ store, loops: false, config: CONFIG });
    });
    after(() => t.close());

    test('auth: missing, wrong, revoked and wrongly-scoped tokens get 401/403, an audit line, and change nothing', async () => {
      const job = (await t.api('POST', '/api/v1/jobs', { command: 'echo target' })).body.job;
      const runner = new ProtocolRunner(t);
      await runner.register();
      const reg = (await t.api('POST', '/api/v1/tokens', { pool: 'local', description: 'used by the test' })).body;
      const revoked = (await t.api('POST', '/api/v1/tokens', { pool: 'local' })).body;
      assert.equal((await t.api('DELETE', `/api/v1/tokens/${revoked.token.id}`)).status, 200);

      const calls: [string, string, unknown?][] = [
        ['POST', '/api/v1/jobs', { command: 'echo evil' }],
        ['POST', '/api/v1/jobs/batch', { jobs: [{ command: 'echo evil' }] }],
        ['GET', '/api/v1/jobs'],
        ['GET', `/api/v1/jobs/${job.id}`],
        ['GET', `/api/v1/jobs/${job.id}/events`],
        ['GET', `/api/v1/jobs/${job.id}/logs`],
        ['POST', `/api/v1/jobs/${job.id}/cancel`],
        ['POST', `/api/v1/jobs/${job.id}/retry`],
        ['GET', '/api/v1/pools'],
        ['POST', '/api/v1/pools', { name: 'evil', maxRunners: 100 }],
        ['PUT', '/api/v1/pools/local', { name: 'local', maxRunners: 100 }],
        ['GET', '/api/v1/tokens'],
        ['POST', '/api/v1/tokens', { pool: 'local' }],
        ['DELETE', `/api/v1/tokens/${reg.token.id}`],
        ['GET', '/api/v1/runners'],
        ['GET', `/api/v1/runners/${runner.id}`],
        ['POST', `/api/v1/runners/${runner.id}/disable`],
        ['DELETE', `/api/v1/runners/${runner.id}`],
        ['GET', '/api/v1/events'],
        ['GET', '/api/v1/class-sizes'],
      ];
      const who: { name: string; headers: Record<string, string>; status: number; code: string }[] = [
        { name: 'no token', headers: {}, status: 401, code: 'unauthorized' },
        { name: 'wrong token', headers: { authorization: 'Bearer ryd_adm_not-a-real-token' }, status: 401, code: 'unauthorized' },
        { name: 'not a bearer header', headers: { authorization: `Basic ${t.token}` }, status: 401, code: 'unauthorized' },
        { name: 'revoked registration token', headers: { authorization: `Bearer ${revoked.secret}` }, status: 401, code: 'unauthorized' },
        { name: 'registration token', headers: { authorization: `Bearer ${reg.secret}` }, status: 403, code: 'forbidden' },
        { name: 'runner credential', headers: { authorization: `Bearer ${runner.credential}` }, status: 403, code: 'forbidden' },
      ];

      const snapshot = await storeSnapshot(t.server.db);
      await t.server.ctx.audit.flush();
      const auditBefore = await countAuthEvents(t.server.db);
      let refused = 0;
      for (const w of who) {
        for (const [method, path, body] of calls) {
          const r = await t.api(method, path, body, { token: null, headers: w.headers });
          assertError(r, w.status);
          assert.equal(r.body.error.code, w.code, `${w.name}: ${method} ${path}`);
          refused++;
        }
      }
      assert.deepEqual(await storeSnapshot(t.server.db), snapshot, 'refused calls changed nothing');
      await t.server.ctx.audit.flush();
      assert.equal(await countAuthEvents(t.server.db), auditBefore + refused, 'every refused call is counted in the audit trail');
      // Repeats of one refusal (same client, token and reason) are one row with a count.
      const [last] = await t.server.db.query(`select subject, reason, actor, (data->>'count')::int as count from events where kind = 'auth' order by id desc limit 1`);
      assert.deepEqual(last, { subject: 'POST /api/v1/jobs', reason: 'this call needs an admin token; a runner token was given', actor: runner.id, count: calls.length });
      const [anon] = await t.server.db.query(`select subject, reason, actor from events where kind = 'auth' and reason like 'missing bearer token%' order by id limit 1`);
      assert.deepEqual({ ...anon, reason: anon.reason.split(':')[0] }, { subject: 'POST /api/v1/jobs', reason: 'missing bearer token', actor: 'anonymous' });
      // The audit line keeps no secret.
      const audit = await t.server.db.query(`select e::text as row from events e where kind = 'auth'`);
      for (const secret of [reg.secret, revoked.secret, runner.credential, 'ryd_adm_not-a-real-token'])
        assert.ok(!audit.some((a) => a.row.includes(secret)), 'secret in audit trail');

      // Runner endpoints: registration needs a live registration token; a runner acts only as itself.
      const other = new ProtocolRunner(t);
      await other.register();
      const register = (token: string | null) =>
        t.api('POST', '/api/v1/runners/register', { id: '6f1c9a8e-5a4b-4b0e-9d7c-0d6a9b1f2e3d', name: 'x', version: 'v', publicKey: other.keys.publicKey }, { token });
      assertError(await register(null), 401);
      assertError(await register('ryd_reg_wrong'), 401);
      assertError(await register(t.token), 403);
      assertError(await register(runner.credential), 403);
      assertError(await register(revoked.secret), 403, 'token', /revoked/);
      assertError(await other.call('POST', `/api/v1/runners/${runner.id}/heartbeat`, { version: 'v' }), 403, undefined, /only act as itself/);
      assertError(await other.call('POST', `/api/v1/runners/${runner.id}/claim`, { max: 1, waitMs: 0 }), 403);
      assertError(await t.api('POST', `/api/v1/jobs/${job.id}/start`, { attempt: 1 }), 403);
      assert.equal(await t.server.db.query(`select 1 from runners where id = '6f1c9a8e-5a4b-4b0e-9d7c-0d6a9b1f2e3d'`).then((r) => r.length), 0);
    });

    test('bad input: right 4xx, field named, nothing changed', async () => {
      const job = (await t.api('POST', '/api/v1/jobs', { command: 'echo bystander' })).body.job;
      const snapshot = await storeSnapshot(t.server.db);
      const post = (body: unknown) => t.api('POST', '/api/v1/jobs', body);

      assertError(await t.api('POST', '/api/v1/jobs', undefined, { raw: '{"command": "echo' }), 400, 'body', /malformed JSON/);
      assertError(await t.api('POST', '/api/v1/jobs', undefined, { raw: '' }), 400, 'body');
      assertError(await t.api('POST', '/api/v1/jobs', undefined, { raw: '[1, 2]' }), 400, 'body');
      assertError(await t.api('POST', '/api/v1/jobs', undefined, { raw: 'null' }), 400, 'body');
      assertError(await t.api('POST', '/api/v1/jobs', { command: 'echo x' }, { headers: { 'content-type': 'text/plain' } }), 400, 'body', /Content-Type: application\/json/);
      assertError(await t.api('POST', '/api/v1/jobs', undefined, { raw: 'command=echo', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 400, 'body');
      assertError(await post({ command: 123 }), 400, 'command', /expected string/);
      assertError(await post({ commands: 'echo x' }), 400, 'commands');
      assertError(await post({ commands: ['echo', 7] }), 400, 'commands[1]');
      assertError(await post({}), 400, 'commands', /give commands/);
      assertError(await post({ command: 'a', commands: ['b'] }), 400, 'command', /not both/);
      assertError(await post({ command: 'echo x', surprise: true }), 400, 'surprise', /surprise/);
      assertError(await post({ command: 'echo x', env: { '1BAD': 'v' } }), 400, 'env.1BAD');
      assertError(await post({ command: 'echo x', env: { GOOD: 1 } }), 400, 'env.GOOD');
      assertError(await post({ command: 'echo x', timeout: 'forever' }), 400, 'timeout', /invalid duration/);
      assertError(await post({ command: 'echo x', timeout: 0 }), 400, 'timeout', /positive/);
      assertError(await post({ command: 'echo x', maxAttempts: 0 }), 400, 'maxAttempts');
      assertError(await post({ command: 'echo x', maxAttempts: 'three' }), 400, 'maxAttempts');
      assertError(await post({ command: 'echo x', retryOnFailure: 'yes' }), 400, 'retryOnFailure');
      assertError(await post({ command: 'echo x', pool: 'Not A Slug' }), 400, 'pool', /slug/);
      assertError(await post({ command: 'echo x', pool: 'nowhere' }), 422, 'pool', /unknown pool "nowhere"/);
      assertError(await post({ command: '' }), 400, 'command');

      // Oversized bodies: refused by Content-Length before reading, and while reading a chunked upload.
      const big = JSON.stringify({ command: 'x'.repeat(MAX_BODY) });
      assertError(await t.api('POST', '/api/v1/jobs', undefined, { raw: big }), 413, 'body', /exceeds the limit of 65536 bytes/);
      assertError(await sendChunked(`${t.url}/api/v1/jobs`, { token: t.token, body: Buffer.from(big) }), 413, 'body');
      assertError(await sendChunked(`${t.url}/api/v1/jobs/batch`, { token: t.token, body: Buffer.alloc(4 * 1024 * 1024, ' ') }), 413, 'body');
      const chunkedOk = await sendChunked(`${t.url}/api/v1/jobs/${job.id}/cancel`, { token: t.token, body: Buffer.from('{}') });
      assert.equal(chunkedOk.status, 200, 'a small chunked body is read normally');
      assert.equal(chunkedOk.body.job.state, 'cancelled');

      for (const limit of ['-1', '0', 'abc', '1.5', '100000', '']) assertError(await t.api('GET', `/api/v1/jobs?limit=${limit}`), 400, 'limit', undefined);
      for (const before of ['0', '-3', 'x']) assertError(await t.api('GET', `/api/v1/jobs?before=${before}`), 400, 'before');
      assertError(await t.api('GET', '/api/v1/jobs?state=queued,bogus'), 400, 'state[1]');
      assertError(await t.api('GET', '/api/v1/jobs?runner=not-a-uuid'), 400, 'runner');
      assertError(await t.api('GET', '/api/v1/events?limit=0'), 400, 'limit');
      assertError(await t.api('GET', '/api/v1/events?kind=everything'), 400, 'kind');
      assertError(await t.api('GET', '/api/v1/runners?state=asleep'), 400, 'state[0]');
      assertError(await t.api('GET', `/api/v1/jobs/${job.id}/logs?after=-1`), 400, 'after');
      assertError(await t.api('GET', `/api/v1/jobs/${job.id}/logs?follow=maybe`), 400, 'follow');
      for (const id of ['abc', '-1', '1.5', '1e3', '9999999999999999999']) {
        assertError(await t.api('GET', `/api/v1/jobs/${id}`), 400, 'id', /positive integer/);
        assertError(await t.api('POST', `/api/v1/jobs/${id}/cancel`), 400, 'id');
      }
      assertError(await t.api('GET', '/api/v1/jobs/999999999'), 404);
      assertError(await t.api('POST', '/api/v1/jobs/999999999/cancel'), 404);
      assertError(await t.api('GET', '/api/v1/runners/not-a-uuid'), 400, 'id', /UUID/);
      assertError(await t.api('GET', '/api/v1/runners/6f1c9a8e-5a4b-4b0e-9d7c-0d6a9b1f2e3d'), 404);

      const many = Array.from({ length: MAX_BATCH + 1 }, (_, i) => ({ command: `echo ${i}` }));
      assertError(await t.api('POST', '/api/v1/jobs/batch', { jobs: many }), 400, 'jobs', /20/);
      assertError(await t.api('POST', '/api/v1/jobs/batch', { jobs: [] }), 400, 'jobs');
      assertError(await t.api('POST', '/api/v1/jobs/batch', { jobs: 'all of them' }), 400, 'jobs');
      assertError(await t.api('POST', '/api/v1/jobs/batch', { jobs: [{ command: 'a' }, { command: 'b' }, { command: 3 }] }), 400, 'jobs[2].command');
      assertError(await t.api('POST', '/api/v1/jobs/batch', { jobs: [{ command: 'a' }, { comand: 'typo' }] }), 400, 'jobs[1].comand');
      assertError(await t.api('POST', '/api/v1/jobs/batch', { jobs: [{ command: 'a' }, { command: 'b', pool: 'other' }, { command: 'c', pool: 'nowhere' }] }), 422, 'jobs[2].pool');

      assertError(await t.api('POST', '/api/v1/pools', { name: 'p1', maxRunners: -1 }), 400, 'maxRunners');
      assertError(await t.api('POST', '/api/v1/pools', { name: 'p1', idleTimeout: 'a while' }), 400, 'idleTimeout', /invalid duration/);
      assertError(await t.api('POST', '/api/v1/pools', { name: 'p1', minIdle: 3, maxRunners: 1 }), 400, 'minIdle');
      assertError(await t.api('POST', '/api/v1/pools', { pools: [{ name: 'p1' }, { name: 'p2', maxRunners: 'many' }] }), 400, 'pools[1].maxRunners');
      assertError(await t.api('POST', '/api/v1/pools', { pools: [{ name: 'p1' }], extra: 1 }), 400, 'extra');
      assertError(await t.api('POST', '/api/v1/pools', { name: 'p1', size: 'xl' }), 400, 'size');
      assertError(await t.api('POST', '/api/v1/pools', { name: 'p1', class: 'gigantic' }), 422, 'pools[0].class', /unknown class size/);
      assertError(await t.api('POST', '/api/v1/pools', { pools: [{ name: 'p1' }, { name: 'p2', class: 'gigantic' }] }), 422, 'pools[1].class');
      assertError(await t.api('PUT', '/api/v1/pools/local', { name: 'other' }), 400, 'name', /match the URL/);
      assertError(await t.api('PUT', '/api/v1/pools/p1', { name: 'p1', provider: 'mainframe' }), 400, 'provider');
      assertError(await t.api('GET', '/api/v1/pools/Not_A_Slug'), 400, 'name');
      assertError(await t.api('GET', '/api/v1/pools/nowhere'), 404);

      assertError(await t.api('POST', '/api/v1/tokens', {}), 400, 'pool');
      assertError(await t.api('POST', '/api/v1/tokens', { pool: 'nowhere' }), 422, 'pool');
      assertError(await t.api('POST', '/api/v1/tokens', { pool: 'local', expiresIn: 'never' }), 400, 'expiresIn');
      assertError(await t.api('POST', '/api/v1/tokens', { pool: 'local', expiresIn: 0 }), 400, 'expiresIn', /positive/);
      assertError(await t.api('POST', '/api/v1/tokens', { pool: 'local', kind: 'admin' }), 400, 'kind');
      assertError(await t.api('GET', '/api/v1/tokens?kind=runner'), 400, 'kind');
      assertError(await t.api('DELETE', '/api/v1/tokens/tok_nope'), 404);

      const after = await storeSnapshot(t.server.db);
      // The one change is the small chunked cancel above.
      assert.deepEqual({ ...after, jobs: undefined, events: undefined }, { ...snapshot, jobs: undefined, events: undefined });
      assert.equal((after.jobs as any).n, (snapshot.jobs as any).n, 'no job was created');
      assert.equal((after.events as any).n, (snapshot.events as any).n + 1, 'only the cancel was recorded');
    });

    test('jobs: submit, idempotent submit, batch, list with filters and paging, show, events, cancel, retry', async () => {
      const created = await t.api('PUT', '/api/v1/pools/paging', { name: 'paging', maxRunners: 0 });
      assert.equal(created.status, 200);
      assert.equal(created.body.pool.created, true);

      const one = await t.api('POST', '/api/v1/jobs', { pool: 'paging', commands: ['echo one', 'echo two'], payload: { n: 1 }, env: { A: 'b' }, labels: ['x'], timeout: '90s', maxAttempts: 5 });
      assert.equal(one.status, 201);
      assert.equal(one.body.created, true);
      const j = one.body.job;
      assert.equal(j.state, 'queued');
      assert.equal(j.pool, 'paging');
      assert.deepEqual(j.commands, ['echo one', 'echo two']);
      assert.deepEqual(j.payload, { n: 1 });
      assert.deepEqual(j.env, { A: 'b' });
      assert.equal(j.timeoutMs, 90_000);
      assert.equal(j.maxAttempts, 5);
      const dflt = (await t.api('POST', '/api/v1/jobs', { command: 'echo default pool' })).body.job;
      assert.equal(dflt.pool, 'local', 'no pool: the local pool');
      assert.equal(dflt.timeoutMs, 3_600_000, "the pool's jobTimeout");

      const key = `idem-${store}-${Date.now()}`;
      const first = await t.api('POST', '/api/v1/jobs', { pool: 'paging', command: 'echo once', idempotencyKey: key });
      const again = await t.api('POST', '/api/v1/jobs', { pool: 'paging', command: 'echo once', idempotencyKey: key });
      assert.equal(first.status, 201);
      assert.equal(again.status, 200);
      assert.equal(again.body.created, false);
      assert.equal(again.body.job.id, first.body.job.id);

      const batch = await t.api('POST', '/api/v1/jobs/batch', {
        jobs: [{ pool: 'paging', command: 'echo b1' }, { pool: 'paging', command: 'echo b2', idempotencyKey: key }, { pool: 'paging', command: 'echo b3' }, { pool: 'other', command: 'echo elsewhere' }],
      });
      assert.equal(batch.status, 201);
      assert.deepEqual(batch.body.jobs.map((x: any) => [x.commands[0], x.created]), [
        ['echo b1', true],
        ['echo once', false],
        ['echo b3', true],
        ['echo elsewhere', true],
      ]);
      assert.equal(batch.body.jobs[1].id, first.body.job.id);

      // paging: 4 jobs in pool paging, newest first, 3 pages of 2/2/0
      const ids = [j.id, first.body.job.id, batch.body.jobs[0].id, batch.body.jobs[2].id].sort((a, b) => b - a);
      const page1 = await t.api('GET', '/api/v1/jobs?pool=paging&limit=2');
      assert.deepEqual(page1.body.jobs.map((x: any) => x.id), ids.slice(0, 2));
      assert.equal(page1.body.nextBefore, ids[1]);
      const page2 = await t.api('GET', `/api/v1/jobs?pool=paging&limit=2&before=${page1.body.nextBefore}`);
      assert.deepEqual(page2.body.jobs.map((x: any) => x.id), ids.slice(2, 4));
      const page3 = await t.api('GET', `/api/v1/jobs?pool=paging&limit=2&before=${page2.body.nextBefore}`);
      assert.deepEqual(page3.body, { jobs: [], nextBefore: null });
      const all = await t.api('GET', '/api/v1/jobs?pool=paging');
      assert.deepEqual(all.body.jobs.map((x: any) => x.id), ids);
      assert.equal(all.body.nextBefore, null);
      const otherPool = await t.api('GET', '/api/v1/jobs?pool=other&state=queued');
      assert.ok(otherPool.body.jobs.every((x: any) => x.pool === 'other' && x.state === 'queued'));
      assert.ok(otherPool.body.jobs.some((x: any) => x.id === batch.body.jobs[3].id));

      const shown = await t.api('GET', `/api/v1/jobs/${j.id}`);
      assert.equal(shown.status, 200);
      assert.deepEqual(shown.body.job, j);

      const cancelled = await t.api('POST', `/api/v1/jobs/${j.id}/cancel`);
      assert.equal(cancelled.status, 200);
      assert.equal(cancelled.body.job.state, 'cancelled');
      assertError(await t.api('POST', `/api/v1/jobs/${j.id}/cancel`), 409, undefined, /already cancelled/);
      assert.deepEqual((await t.api('GET', '/api/v1/jobs?pool=paging&state=cancelled')).body.jobs.map((x: any) => x.id), [j.id]);
      assertError(await t.api('POST', `/api/v1/jobs/${first.body.job.id}/retry`), 409, undefined, /only failed, cancelled or timed-out/);
      const retried = await t.api('POST', `/api/v1/jobs/${j.id}/retry`);
      assert.equal(retried.status, 200);
      assert.equal(retried.body.job.state, 'queued');
      assert.equal(retried.body.job.error, null);

      const events = await t.api('GET', `/api/v1/jobs/${j.id}/events`);
      const admin = events.body.events[0].actor;
      assert.match(admin, /^admin:tok_/, 'the actor is the admin token used');
      assert.deepEqual(
        events.body.events.map((e: any) => [e.fromState, e.toState, e.reason, e.actor]),
        [
          [null, 'queued', 'submitted', admin],
          ['queued', 'cancelled', 'cancelled by operator', admin],
          ['cancelled', 'queued', 'retried by operator', admin],
        ],
      );
      assertError(await t.api('GET', '/api/v1/jobs/999999999/events'), 404);
      const feed = await t.api('GET', `/api/v1/events?kind=job&subject=${j.id}`);
      assert.equal(feed.body.events.length, 3);
    });

    test('a job driven to its end by a runner: logs (plain and ?follow=1 SSE), result, secrets, metrics', async () => {
      const pool = await freshPool(t, 'drive');
      const SECRET = `s3cret-${store}-value-${Math.random().toString(36).slice(2)}`;
      const submitted = await t.api('POST', '/api/v1/jobs', { pool, command: 'make test', secrets: { API_KEY: SECRET } });
      assert.equal(submitted.status, 201);
      const id = submitted.body.job.id;
      assert.deepEqual(submitted.body.job.secretNames, ['API_KEY']);

      const runner = new ProtocolRunner(t);
      const reg = await runner.register(pool);
      assert.equal(reg.config.pool, pool);
      const [claimed] = await runner.claim(1);
      assert.equal(claimed.id, id);
      assert.equal(claimed.attempt, 1);
      assert.equal(claimed.secretsEnc, null, 'the at-rest box never leaves the server');
      assert.deepEqual(runner.openSecrets(claimed), { API_KEY: SECRET }, 'sealed to the claiming runner');
      assert.ok(!JSON.stringify(claimed).includes(SECRET), 'never in clear on the wire');

      const follow = await openSse(`${t.url}/api/v1/jobs/${id}/logs?follow=1`, t.token);
      try {
        assert.equal(follow.status, 200);
        assert.match(follow.contentType ?? '', /text\/event-stream/);
        assert.deepEqual((await runner.start(claimed)).body, { state: 'running', cancel: false });
        assert.equal((await runner.log(claimed, 'compiling', 'linking')).status, 200);
        const firstLog = await follow.next();
        assert.equal(firstLog.event, 'log');
        assert.deepEqual(JSON.parse(firstLog.data).lines.map((l: any) => l.m), ['compiling', 'linking']);
        assert.equal((await runner.log(claimed, 'all tests passed')).status, 200);
        assert.deepEqual((await runner.result(claimed, 0, { output: { coverage: 91 } })).body, { state: 'succeeded' });
        const rest = await follow.until('end');
        const end = rest.at(-1)!;
        assert.deepEqual(
          rest.filter((e) => e.event === 'log').flatMap((e) => JSON.parse(e.data).lines.map((l: any) => l.m)),
          ['all tests passed'],
        );
        assert.deepEqual(JSON.parse(end.data), { state: 'succeeded', exitCode: 0, error: null });
      } finally {
        follow.close();
      }
      // A follow opened after the end replays everything and ends at once.
      const late = await openSse(`${t.url}/api/v1/jobs/${id}/logs?follow=true`, t.token);
      try {
        const evs = await late.until('end');
        assert.deepEqual(evs.map((e) => e.event), ['log', 'log', 'end']);
      } finally {
        late.close();
      }

      const logs = await t.api('GET', `/api/v1/jobs/${id}/logs`);
      assert.equal(logs.status, 200);
      assert.deepEqual(logs.body.lines.map((l: any) => [l.seq, l.s, l.m]), [
        [1, 'o', 'compiling'],
        [1, 'o', 'linking'],
        [2, 'o', 'all tests passed'],
      ]);
      assert.equal(logs.body.finished, true);
      assert.equal(logs.body.state, 'succeeded');
      assert.deepEqual((await t.api('GET', `/api/v1/jobs/${id}/logs?after=${1}`)).body.lines.map((l: any) => l.m), ['all tests passed']);

      const done = (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;
      assert.equal(done.state, 'succeeded');
      assert.equal(done.exitCode, 0);
      assert.deepEqual(done.output, { coverage: 91 });
      assert.deepEqual((await t.api('GET', `/api/v1/jobs/${id}/events`)).body.events.map((e: any) => `${e.fromState}->${e.toState}: ${e.reason}`), [
        'null->queued: submitted',
        'queued->claimed: claimed by runner',
        'claimed->running: process started',
        'running->succeeded: exit code 0',
      ]);
      // The late report of a finished job is refused.
      assertError(await runner.result(claimed, 1), 409);
      assertError(await runner.log(claimed, 'too late'), 409);

      // Secrets: never returned by the user API, never stored or recorded in clear.
      for (const path of [`/api/v1/jobs/${id}`, '/api/v1/jobs?limit=1000', `/api/v1/jobs/${id}/events`, '/api/v1/events?limit=1000', `/api/v1/jobs/${id}/logs`, '/api/v1/runners'])
        assert.ok(!JSON.stringify((await t.api('GET', path)).body).includes(SECRET), path);
      for (const table of ['jobs', 'events', 'job_logs', 'tokens', 'runners', 'pools']) {
        const rows = await t.server.db.query(`select t::text as row from ${table} t`);
        assert.ok(!rows.some((r) => r.row.includes(SECRET)), `${table} holds the secret in clear`);
      }
      const [row] = await t.server.db.query('select secrets_enc, secret_names from jobs where id = $1', [id]);
      assert.equal(row!.secrets_enc, null, 'dropped once the job finished');
      assert.deepEqual(row!.secret_names, ['API_KEY']);
      const waiting = await t.api('POST', '/api/v1/jobs', { pool, command: 'later', secrets: { TOKEN: SECRET } });
      const [stored] = await t.server.db.query('select secrets_enc from jobs where id = $1', [waiting.body.job.id]);
      assert.ok(stored!.secrets_enc && !stored!.secrets_enc.includes(SECRET), 'encrypted at rest while queued');
      // Tokens are stored as hashes only.
      const tokens = await t.server.db.query(`select t::text as row from tokens t`);
      assert.ok(!tokens.some((r) => r.row.includes(runner.credential) || r.row.includes(t.token)));

      const metrics = await t.api('GET', '/metrics', undefined, { token: null });
      assert.equal(metrics.status, 200);
      assert.match(metrics.body, /^# TYPE runyard_jobs gauge$/m);
      assert.match(metrics.body, /^runyard_jobs\{pool="drive",state="queued"\} 1$/m);
      assert.match(metrics.body, /^runyard_job_outcomes_total\{pool="drive",state="succeeded"\} 1$/m);
      assert.ok(!metrics.body.includes(SECRET));
    });

    test('a runner is fenced over HTTP: after its job is requeued and reclaimed, its reports get 409', async () => {
      const pool = await freshPool(t, 'fence');
      const { id } = (await t.api('POST', '/api/v1/jobs', { pool, command: 'flaky' })).body.job;
      const a = new ProtocolRunner(t);
      await a.register(pool);
      const [ja] = await a.claim(1);
      assert.equal(ja.id, id);
      await a.start(ja);
      await a.log(ja, 'from A');
      // The operator deletes runner A: its job goes back to the queue.
      assert.equal((await t.api('DELETE', `/api/v1/runners/${a.id}`)).status, 200);
      const b = new ProtocolRunner(t);
      await b.register(pool);
      const [jb] = await b.claim(1);
      assert.equal(jb.id, id);
      assert.equal(jb.attempt, 2);
      // A's credential was revoked with it; a stale attempt number is refused even for B.
      assert.ok([401, 403, 410].includes((await a.result(ja, 0)).status));
      assertError(await b.result({ id, attempt: 1 }, 0), 409);
      await b.start(jb);
      await b.log(jb, 'from B'); // B counts its batches from 1 too
      assert.equal((await b.result(jb, 0)).body.state, 'succeeded');
      const logs = await t.api('GET', `/api/v1/jobs/${id}/logs`);
      assert.deepEqual(logs.body.lines.map((l: any) => l.m), ['from A', 'from B']);
    });

    test('a claim the runner abandoned takes no job, and one answered unseen is undone by the next heartbeat', async () => {
      const pool = await freshPool(t, 'abandon');
      const r = new ProtocolRunner(t);
      await r.register(pool);
      const beat = (abandoned: number[]) => r.call('POST', `/api/v1/runners/${r.id}/heartbeat`, { version: 'v', jobs: [], abandoned });
      // Claim 1 waits for work, and is reported abandoned (its connection still looks open).
      const parked = r.call('POST', `/api/v1/runners/${r.id}/claim`, { max: 1, waitMs: 3000, seq: 1 });
      assert.equal((await beat([1])).status, 200);
      const { id } = (await t.api('POST', '/api/v1/jobs', { pool, command: 'true' })).body.job;
      assert.deepEqual((await parked).body, { jobs: [] }, 'an abandoned claim is answered empty');
      assert.equal((await t.api('GET', `/api/v1/jobs/${id}`)).body.job.state, 'queued');
      // Claim 2 takes the job, but the runner never saw the answer; its heartbeat says so.
      const taken = await r.call('POST', `/api/v1/runners/${r.id}/claim`, { max: 1, waitMs: 0, seq: 2 });
      assert.equal(taken.body.jobs[0].id, id);
      assert.equal((await t.api('GET', `/api/v1/jobs/${id}`)).body.job.state, 'claimed');
      assert.equal((await beat([2])).status, 200);
      const job = (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;
      assert.equal(job.state, 'queued', 'back in the queue at once, not after the lost-claim timeout');
      assert.equal(job.attempt, 0, 'the unstarted attempt is refunded');
      const [again] = await r.claim(1);
      assert.deepEqual([again.id, again.attempt], [id, 1]);
      assertError(await r.call('POST', `/api/v1/runners/${r.id}/heartbeat`, { version: 'v', abandoned: [-1] }), 400, 'abandoned[0]');
    });

    test('results sent at once are written together, and each request gets its own answer', async () => {
      const pool = 'batch';
      assert.equal((await t.api('PUT', `/api/v1/pools/${pool}`, { name: pool, maxRunners: 0, maxJobsPerRunner: 2 })).status, 200);
      for (let i = 0; i < 6; i++) await t.api('POST', '/api/v1/jobs', { pool, command: `job ${i}` });
      const runners = [new ProtocolRunner(t), new ProtocolRunner(t), new ProtocolRunner(t)];
      const held: [ProtocolRunner, any][] = [];
      for (const r of runners) {
        await r.register(pool);
        for (const j of await r.claim(2)) held.push([r, j]);
      }
      assert.equal(held.length, 6);
      const [r0, j0] = held[0]!;
      const answers = await Promise.all([
        ...held.map(([r, j], i) => r.result(j, i === 1 ? 3 : 0)),
        r0.result({ id: j0.id, attempt: j0.attempt + 1 }, 0), // an attempt it does not hold
        r0.result(j0, 0), // the same result twice
        held[5]![0].result(j0, 0), // another runner's job
      ]);
      assert.deepEqual(answers.slice(1, 6).map((a) => a.body.state), ['failed', 'succeeded', 'succeeded', 'succeeded', 'succeeded']);
      // Of the two identical reports one is recorded, whichever arrived first; the other is refused.
      assert.deepEqual([answers[0]!, answers[7]!].map((a) => a.status).sort(), [200, 409]);
      assert.equal([answers[0]!, answers[7]!].find((a) => a.status === 200)!.body.state, 'succeeded');
      assertError(answers[6]!, 409);
      assertError(answers[8]!, 409);
      assertError([answers[0]!, answers[7]!].find((a) => a.status === 409)!, 409);
      assert.equal((await t.api('GET', `/api/v1/jobs/${j0.id}`)).body.job.state, 'succeeded');
      for (const r of runners) assert.equal((await t.api('GET', `/api/v1/runners/${r.id}`)).body.runner.state, 'idle');
    });

    test('cancel of a running job reaches the runner, whose result records cancelled', async () => {
      const pool = await freshPool(t, 'cancel');
      const { id } = (await t.api('POST', '/api/v1/jobs', { pool, command: 'sleep 1000' })).body.job;
      const r = new ProtocolRunner(t);
      await r.register(pool);
      const [job] = await r.claim(1);
      await r.start(job);
      const control = await openSse(`${t.url}/api/v1/runners/${r.id}/control`, r.credential);
      try {
        assert.equal((await control.next()).event, 'hello');
        const c = await t.api('POST', `/api/v1/jobs/${id}/cancel`);
        assert.equal(c.body.job.state, 'running');
        assert.equal(c.body.job.cancelRequested, true);
        const signal = (await control.until('cancel')).at(-1)!;
        assert.deepEqual(JSON.parse(signal.data), { jobId: id });
      } finally {
        control.close();
      }
      assert.deepEqual((await r.log(job, 'stopping')).body, { cancel: true });
      assert.deepEqual((await r.result(job, 143)).body, { state: 'cancelled' });
      const metrics = await t.api('GET', '/metrics', undefined, { token: null });
      assert.match(metrics.body, /^runyard_job_outcomes_total\{pool="cancel",state="cancelled"\} 1$/m);
    });

    test('pools: list, show, apply by PUT and POST (one or several), config hash changes only when runners change', async () => {
      const list = await t.api('GET', '/api/v1/pools');
      assert.equal(list.status, 200);
      const local = list.body.pools.find((p: any) => p.name === 'local');
      assert.equal(local.config.maxJobsPerRunner, 4);
      assert.equal(local.source, 'config');
      assert.equal(typeof local.queued, 'number');
      assert.equal(typeof local.runners, 'object');

      const put = await t.api('PUT', '/api/v1/pools/web', { name: 'web', maxRunners: 3, idleTimeout: '2m', env: { A: '1' } });
      assert.equal(put.status, 200);
      assert.equal(put.body.pool.created, true);
      assert.equal(put.body.pool.config.idleTimeout, 120_000);
      const hash = put.body.pool.configHash;
      const scale = await t.api('PUT', '/api/v1/pools/web', { name: 'web', maxRunners: 8, idleTimeout: '2m', env: { A: '1' } });
      assert.equal(scale.body.pool.created, false);
      assert.equal(scale.body.pool.configChanged, false, 'scaling knobs do not replace runners');
      assert.equal(scale.body.pool.configHash, hash);
      const reshape = await t.api('POST', '/api/v1/pools', { name: 'web', maxRunners: 8, env: { A: '2' } });
      assert.equal(reshape.status, 200);
      assert.equal(reshape.body.pools[0].configChanged, true);
      assert.notEqual(reshape.body.pools[0].configHash, hash);

      const several = await t.api('POST', '/api/v1/pools', { pools: [{ name: 'batch-a' }, { name: 'batch-b', class: 'small', maxJobsPerRunner: 2 }] });
      assert.equal(several.status, 200);
      assert.deepEqual(several.body.pools.map((p: any) => [p.name, p.created]), [
        ['batch-a', true],
        ['batch-b', true],
      ]);
      const shown = await t.api('GET', '/api/v1/pools/batch-b');
      assert.equal(shown.status, 200);
      assert.equal(shown.body.pool.config.class, 'small');
      assert.equal(shown.body.pool.config.maxJobsPerRunner, 2);
      assert.equal(shown.body.pool.source, 'api');
      const names = (await t.api('GET', '/api/v1/pools')).body.pools.map((p: any) => p.name);
      for (const n of ['local', 'other', 'web', 'batch-a', 'batch-b']) assert.ok(names.includes(n), n);
      const poolEvents = await t.api('GET', '/api/v1/events?kind=pool&subject=web&after=0');
      assert.deepEqual(poolEvents.body.events.map((e: any) => e.reason), ['created', 'config changed', 'config changed; runners will be replaced']);

      const sizes = await t.api('GET', '/api/v1/class-sizes');
      assert.equal(sizes.status, 200);
      assert.deepEqual(sizes.body.classSizes.map((s: any) => s.name).sort(), ['large', 'medium', 'small']);
      assert.deepEqual(sizes.body.classSizes.find((s: any) => s.name === 'small'), { name: 'small', cpu: 0.5, memoryMb: 1024 });
    });

    test('tokens: create, list, revoke; a revoked registration token cannot register', async () => {
      const made = await t.api('POST', '/api/v1/tokens', { pool: 'other', description: 'ci box', expiresIn: '1h' });
      assert.equal(made.status, 201);
      assert.match(made.body.secret, /^ryd_reg_/);
      assert.equal(made.body.token.kind, 'registration');
      assert.equal(made.body.token.pool, 'other');
      assert.ok(made.body.token.expiresAt);
      assert.equal(made.body.token.hash, undefined);

      const listed = await t.api('GET', '/api/v1/tokens?pool=other');
      assert.equal(listed.status, 200);
      const mine = listed.body.tokens.find((x: any) => x.id === made.body.token.id);
      assert.equal(mine.description, 'ci box');
      assert.ok(!JSON.stringify(listed.body).includes(made.body.secret), 'secrets are shown once, at creation');
      assert.ok(listed.body.tokens.every((x: any) => x.kind !== 'runner' && x.hash === undefined));
      assert.ok((await t.api('GET', '/api/v1/tokens?kind=admin')).body.tokens.every((x: any) => x.kind === 'admin'));

      const revoked = await t.api('DELETE', `/api/v1/tokens/${made.body.token.id}`);
      assert.equal(revoked.status, 200);
      assert.ok(revoked.body.token.revokedAt);
      const r = new ProtocolRunner(t);
      const attempt = await t.api('POST', '/api/v1/runners/register', { id: r.id, name: 'late', version: 'v', publicKey: r.keys.publicKey }, { token: made.body.secret });
      assertError(attempt, 403, 'token', /revoked/);
      const short = await t.api('POST', '/api/v1/tokens', { pool: 'other', expiresIn: '1ms' });
      await waitFor('the short-lived token to expire', async () => {
        const r2 = await t.api('POST', '/api/v1/runners/register', { id: r.id, name: 'late', version: 'v', publicKey: r.keys.publicKey }, { token: short.body.secret });
        return r2.status === 401 && /expired/.test(r2.body.error.message);
      });
      assert.equal((await t.server.db.query('select 1 from runners where id = $1', [r.id])).length, 0, 'never registered');
      const ev = await t.api('GET', `/api/v1/events?kind=token&subject=${made.body.token.id}&after=0`);
      assert.deepEqual(ev.body.events.map((e: any) => e.reason), ['registration token created', 'revoked']);
    });

    test('healthz, metrics and unknown routes', async () => {
      const h = await t.api('GET', '/healthz', undefined, { token: null });
      assert.equal(h.status, 200);
      assert.equal(h.body.status, 'ok');
      assert.equal(h.body.store, store);
      assert.equal(typeof h.body.version, 'string');
      const m = await t.api('GET', '/metrics', undefined, { token: null });
      assert.equal(m.status, 200);
      assert.match(m.body, /^# HELP runyard_jobs /m);
      assert.match(m.body, /^# HELP runyard_job_outcomes_total /m);
      assert.match(m.body, /^runyard_http_request_duration_seconds_count\{/m);
      const nf = await t.api('GET', '/no/such/route', undefined, { token: null });
      assertError(nf, 404);
      // Under /api/v1 an unknown path needs auth first: nothing is revealed to strangers.
      assertError(await t.api('GET', '/api/v1/nothing-here', undefined, { token: null }), 401);
      assertError(await t.api('GET', '/api/v1/nothing-here'), 404);
    });

    test('the SSE follow ends for a job that is cancelled while queued', async () => {
      const { id } = (await t.api('POST', '/api/v1/jobs', { pool: 'other', command: 'never runs' })).body.job;
      const follow = await openSse(`${t.url}/api/v1/jobs/${id}/logs?follow=1`, t.token);
      try {
        await t.api('POST', `/api/v1/jobs/${id}/cancel`);
        const end = (await follow.until('end')).at(-1)!;
        assert.equal(JSON.parse(end.data).state, 'cancelled');
      } finally {
        follow.close();
      }
      await waitFor('the job to read cancelled', async () => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job.state === 'cancelled');
    });
  });
}
