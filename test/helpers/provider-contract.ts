/*
 * The contract every provider passes: create, list, describe, terminate ("already gone" is
 * success), exit notification, and finding its runners again from a fresh instance (crash).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Provider, LaunchSpec } from '../../src/providers/provider.js';
import { poolSchema } from '../../src/config/schema.js';
import { startTestServer, waitFor, type TestServer } from './server.js';

export interface ContractSetup {
  /** A provider instance; called again to simulate a control-plane restart (same backing state). */
  make: (t: TestServer) => Provider;
  poolOverrides?: Record<string, unknown>;
}

export function providerContract(name: string, setup: ContractSetup) {
  describe(`provider contract: ${name}`, () => {
    let t: TestServer;
    let provider: Provider;
    const exits: string[] = [];

    before(async () => {
      // No pools of the server's own: the scheduler must not start runners behind our back.
      t = await startTestServer({ config: { pools: [{ name: 'contract', maxRunners: 0, ...setup.poolOverrides }] } });
      provider = setup.make(t);
      provider.onExit((id) => exits.push(id));
    });
    after(async () => {
      for (const r of await provider.list()) await provider.terminate(r.runnerId, { graceMs: 0 });
      await provider.close();
      await t.close();
    });

    async function spec(): Promise<LaunchSpec> {
      const { body } = await t.api('POST', '/api/v1/tokens', { pool: 'contract' });
      const runnerId = randomUUID();
      return {
        runnerId,
        name: `contract-${runnerId.slice(0, 8)}`,
        pool: poolSchema.parse({ name: 'contract', ...setup.poolOverrides }),
        serverUrl: t.url,
        registrationToken: body.secret,
        instanceId: t.server.instanceId,
      };
    }
    const registered = (id: string) =>
      waitFor(`runner ${id} registered`, async () => (await t.api('GET', `/api/v1/runners/${id}`)).body.runner?.state === 'idle', 20_000);

    test('create starts a runner that reaches the server and registers; list and describe show it', async () => {
      const s = await spec();
      const { ref } = await provider.create(s);
      assert.ok(ref, 'a provider reference');
      await registered(s.runnerId);
      const listed = (await provider.list()).find((r) => r.runnerId === s.runnerId);
      assert.ok(listed?.alive, 'listed alive');
      assert.equal(listed.pool, 'contract');
      assert.equal((await provider.describe(s.runnerId))?.ref, ref);
      await provider.terminate(s.runnerId, { graceMs: 5_000 });
      assert.equal((await provider.list()).some((r) => r.runnerId === s.runnerId && r.alive), false, 'gone after terminate');
      assert.equal(await provider.describe(s.runnerId), undefined);
    });

    test('terminate of an unknown or already-gone runner succeeds', async () => {
      await provider.terminate(randomUUID(), { graceMs: 0 });
      const s = await spec();
      await provider.create(s);
      await registered(s.runnerId);
      await provider.terminate(s.runnerId, { graceMs: 5_000 });
      await provider.terminate(s.runnerId, { graceMs: 5_000 });
    });

    test('a runner that ends by itself is reported through onExit', async () => {
      const s = await spec();
      await provider.create(s);
      await registered(s.runnerId);
      // delete: the agent removes its state and exits 0
      await t.api('DELETE', `/api/v1/runners/${s.runnerId}`);
      await waitFor('exit reported', () => exits.includes(s.runnerId), 20_000);
      assert.equal((await provider.list()).some((r) => r.runnerId === s.runnerId && r.alive), false);
    });

    test('a fresh provider instance (after a control-plane crash) finds the runners started before', async () => {
      const s = await spec();
      await provider.create(s);
      await registered(s.runnerId);
      const again = setup.make(t);
      const found = (await again.list()).find((r) => r.runnerId === s.runnerId);
      assert.ok(found?.alive, 'the new instance sees the running runner');
      await again.terminate(s.runnerId, { graceMs: 5_000 });
      await waitFor('gone', async () => !(await provider.list()).some((r) => r.runnerId === s.runnerId && r.alive), 10_000);
      await again.close();
    });
  });
}
