import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer } from './helpers/server.js';
import { STORES } from './helpers/db.js';

for (const store of STORES) {
  test(`server starts on ${store}, serves healthz and accepts a job`, async () => {
    const t = await startTestServer({ store });
    try {
      const h = await t.api('GET', '/healthz', undefined, { token: null });
      assert.equal(h.status, 200);
      assert.equal(h.body.store, store);
      const r = await t.api('POST', '/api/v1/jobs', { command: 'echo hi' });
      assert.equal(r.status, 201);
      assert.equal(r.body.job.state, 'queued');
      assert.equal(r.body.job.pool, 'local');
    } finally {
      await t.close();
    }
  });
}
