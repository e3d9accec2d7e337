/*
 * Runner identity (issue 13, hole 1): a launch token is spent by the first registration, no
 * registration token re-keys a registered runner, and a credential for a runner that already
 * had its key is handed out only sealed to that key. Tokens are made as the scheduler makes them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startTestServer, type TestServer } from './helpers/server.js';
import { ProtocolRunner } from './helpers/http.js';
import { createToken } from '../src/store/queries/tokens.js';
import { insertStartingRunner } from '../src/store/queries/runners.js';
import { getPool } from '../src/store/queries/pools.js';
import { generateRunnerKeys, openSealed, type RunnerKeyPair } from '../src/lib/sealed.js';

describe('runner takeover', () => {
  let t: TestServer;
  const pool = 'local';
  before(async () => {
    t = await startTestServer({ store: 'postgres', loops: false, config: { pools: [{ name: pool, maxRunners: 0 }] } });
  });
  after(() => t.close());

  /** A starting runner and its launch token, as Scheduler.start makes them. */
  async function launch(): Promise<{ id: string; token: string }> {
    const id = randomUUID();
    const now = Date.now();
    const { secret } = await t.server.db.transaction(async (tx) => {
      const { configHash } = await getPool(tx, pool);
      await insertStartingRunner(tx, now, { id, pool, name: `l-${id.slice(0, 8)}`, provider: 'process', configHash, slots: 1, ephemeral: false, reason: 'test' });
      return createToken(tx, now, { kind: 'registration', pool, runnerId: id, description: 'launch token', expiresAt: now + 120_000 });
    });
    return { id, token: secret };
  }
  const register = (token: string, id: string, keys: RunnerKeyPair) =>
    t.api('POST', '/api/v1/runners/register', { id, name: 'r', version: 'test', publicKey: keys.publicKey }, { token });
  const heartbeat = (id: string, credential: string) => t.api('POST', `/api/v1/runners/${id}/heartbeat`, { version: 'test', jobs: [] }, { token: credential });

  test('a used launch token with another key cannot take over the runner, its job or its secrets', async () => {
    const { id, token } = await launch();
    const real = generateRunnerKeys();
    const first = await register(token, id, real);
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const credential = first.body.credential as string;
    assert.ok(credential.startsWith('ryd_run_'), 'the first registration binds the key and gets its credential');
    const job = (await t.api('POST', '/api/v1/jobs', { pool, command: 'echo hi', secrets: { API_KEY: 'hunter2' } })).body.job;
    const claimed = await t.api('POST', `/api/v1/runners/${id}/claim`, { max: 1, waitMs: 2000 }, { token: credential });
    assert.equal(claimed.body.jobs[0]?.id, job.id);

    const thief = generateRunnerKeys();
    const stolen = await register(token, id, thief);
    assert.equal(stolen.status, 409, JSON.stringify(stolen.body));
    assert.equal(stolen.body.error.field, 'id');
    assert.equal(stolen.body.credential, undefined);
    assert.equal((await heartbeat(id, credential)).status, 200, "the real agent's credential still works");
    const row = (await t.server.db.query('select state, runner_id from jobs where id = $1', [job.id]))[0];
    assert.deepEqual({ state: row.state, runner: row.runner_id }, { state: 'claimed', runner: id }, 'its job was not requeued');
    const spent = (await t.server.db.query('select used_at from tokens where runner_id = $1 and kind = $2', [id, 'registration']))[0];
    assert.ok(spent.used_at, 'the launch token is marked spent');
  });

  test('a launch token cannot register any other runner id, even after it was spent', async () => {
    const { id, token } = await launch();
    assert.equal((await register(token, id, generateRunnerKeys())).status, 201);
    const other = await register(token, randomUUID(), generateRunnerKeys());
    assert.equal(other.status, 403, JSON.stringify(other.body));
  });

  test('two registrations racing with one launch token: exactly one binds its key', async () => {
    const { id, token } = await launch();
    const answers = await Promise.all(Array.from({ length: 4 }, () => register(token, id, generateRunnerKeys())));
    assert.deepEqual(answers.map((a) => a.status).sort(), [201, 409, 409, 409], JSON.stringify(answers.map((a) => a.body)));
    const tokens = await t.server.db.query(`select count(*)::int as n from tokens where runner_id = $1 and kind = 'runner' and revoked_at is null`, [id]);
    assert.equal(tokens[0].n, 1, 'one live credential');
  });

  test('the real agent retrying with the same key after a lost 201 registers; the credential comes sealed to its key', async () => {
    const { id, token } = await launch();
    const keys = generateRunnerKeys();
    const lost = await register(token, id, keys); // its answer never reached the agent
    assert.equal(lost.status, 201);
    const retry = await register(token, id, keys);
    assert.equal(retry.status, 201, JSON.stringify(retry.body));
    assert.equal(retry.body.credential, undefined, 'no credential in clear for a runner that already had its key');
    const { credential } = openSealed(keys.privateKey, retry.body.sealedCredential);
    assert.equal((await heartbeat(id, credential!)).status, 200);
    assert.equal((await heartbeat(id, lost.body.credential)).status, 401, 'the unseen first credential is revoked');
  });

  test('a pool-wide token re-registering a runner with its own key (agent restart) gets the credential only sealed', async () => {
    const r = new ProtocolRunner(t);
    await r.register(pool);
    const tok = (await t.api('POST', '/api/v1/tokens', { pool })).body.secret;
    const again = await register(tok, r.id, r.keys);
    assert.equal(again.status, 201, JSON.stringify(again.body));
    assert.equal(again.body.credential, undefined);
    const { credential } = openSealed(r.keys.privateKey, again.body.sealedCredential);
    assert.equal((await heartbeat(r.id, credential!)).status, 200);
    assert.throws(() => openSealed(generateRunnerKeys().privateKey, again.body.sealedCredential), 'another key cannot open it');
  });
});
