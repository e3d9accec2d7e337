/*
 * The audit trail of refusals (issue 13, hole 6): a refusal is recorded whatever the request
 * carries (a `%00` in the path, a NUL in a webhook's labels), and repeats are aggregated: junk
 * requests from one client are one row per reason and window with a count, not a row each.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startTestServer, type TestServer } from './helpers/server.js';
import { countAuthEvents } from './helpers/http.js';
import { sign } from '../src/github/signature.js';
import { ManualClock } from '../src/lib/clock.js';

const SECRET = 'webhook-secret-for-audit-tests';

describe('audit of refusals', () => {
  let t: TestServer;
  const clock = new ManualClock(Date.now());
  before(async () => {
    t = await startTestServer({ store: 'postgres', clock, loops: false, config: { github: { webhookSecret: SECRET, token: 'ghp_unused', apiUrl: 'http://127.0.0.1:9' } } });
  });
  after(() => t.close());
  const authRows = async () => t.server.db.query(`select subject, reason, actor, data from events where kind = 'auth' order by id`);
  const raw = (path: string, headers: Record<string, string> = {}) => fetch(t.url + path, { headers });

  test('a wrong token on a path with %00 is refused and audited, the path recorded as sent', async () => {
    const res = await raw('/api/v1/jobs/%00', { authorization: 'Bearer ryd_adm_wrong-token' });
    assert.equal(res.status, 401);
    const rows = await authRows();
    assert.ok(rows.some((r) => r.subject === 'GET /api/v1/jobs/%00' && /invalid, revoked or expired/.test(r.reason)), JSON.stringify(rows));
    const nulName = await raw('/api/v1/jobs', { authorization: 'Bearer ryd_adm_' + 'x'.repeat(10) + '%00' });
    assert.equal(nulName.status, 401);
  });

  test('a webhook refused for a NUL in its labels is recorded', async () => {
    const delivery = randomUUID();
    const body = JSON.stringify({ action: 'queued', workflow_job: { id: 987654, run_id: 1, labels: ['self-hosted', 'li\u0000nux'] }, repository: { full_name: 'acme/widgets', owner: { login: 'acme' } } });
    const res = await fetch(`${t.url}/webhooks/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'workflow_job', 'x-github-delivery': delivery, 'x-hub-signature-256': sign(SECRET, body) },
      body,
    });
    assert.ok(res.status === 422 || res.status === 400, `refused, got ${res.status}`);
    const rows = await t.server.db.query(`select subject, reason, data from events where kind = 'github' and (subject like '%987654%' or subject like $1 or reason like '%987654%')`, [`%${delivery}%`]);
    assert.ok(rows.length >= 1, 'the refusal is in the audit trail');
    assert.equal((await t.api('GET', '/healthz', undefined, { token: null })).status, 200);
  });

  test('2,000 junk requests are a few rows with counts; another reason, or a new window, is a row of its own', async () => {
    clock.advance(61_000); // windows opened by the tests above are over
    await t.server.ctx.audit.flush();
    const rowsBefore = (await authRows()).length;
    const countBefore = await countAuthEvents(t.server.db);
    const junk = (i: number) => {
      const path = `/api/v1/${['jobs', 'pools', 'runners', 'tokens'][i % 4]}/${i}`;
      return i % 2 ? raw(path) : raw(path, { authorization: `Bearer ryd_adm_junk-${i}` });
    };
    for (let i = 0; i < 2000; i += 50) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, k) => junk(i + k)));
      assert.ok(answers.every((a) => a.status === 401));
      await Promise.all(answers.map((a) => a.arrayBuffer()));
    }
    await t.server.ctx.audit.flush();
    const rows = (await authRows()).slice(rowsBefore);
    assert.equal(rows.length, 2, `one row per reason: ${JSON.stringify(rows.map((r) => [r.reason, r.data.count]))}`);
    assert.equal((await countAuthEvents(t.server.db)) - countBefore, 2000, 'every refusal counted');
    for (const r of rows) {
      assert.equal(r.data.count, 1000);
      assert.ok(r.data.source, 'the client address is recorded');
      assert.ok(r.data.paths.length > 1 && r.data.paths.length <= 10, 'a sample of the paths tried');
    }

    clock.advance(61_000); // the window is over: the next refusal opens a new row
    assert.equal((await raw('/api/v1/jobs')).status, 401);
    const after = (await authRows()).slice(rowsBefore);
    assert.equal(after.length, 3);
    assert.equal(after[2].data.count, 1);
  });
});
