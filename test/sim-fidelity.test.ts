/*
 * Fidelity: a real runyard run (server, scheduler, process provider, real `runyard agent`
 * processes) is recorded, its trace read back from the store, and replayed in the simulator
 * with the start latency fitted from the same store. The simulated queue-wait percentiles must
 * land within 20% (or 50 ms) of the measured ones.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { readStoreTrace } from '../src/sim/store-trace.js';
import { Simulation } from '../src/sim/simulation.js';
import { policyPools, readSpec, simPools } from '../src/sim/spec.js';
import { waitFigures } from '../src/sim/figures.js';

let t: TestServer;
const POOL = { name: 'local', maxRunners: 2, maxJobsPerRunner: 1, idleTimeout: '10m' };
before(async () => {
  t = await startTestServer({ config: { pools: [POOL] } });
});
after(() => t.close());

const finished = async (ids: number[]) => {
  const rows = await t.server.db.query<{ n: number }>(`select count(*)::int as n from jobs where id = any($1::bigint[]) and state = 'succeeded'`, [ids]);
  return rows[0]!.n === ids.length;
};
const batch = async (n: number, command: string): Promise<number[]> => {
  const r = await t.api('POST', '/api/v1/jobs/batch', { jobs: Array.from({ length: n }, () => ({ command })) });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.jobs.map((j: { id: number }) => j.id);
};

test('replaying a recorded run gives queue waits within 20% (or 50 ms) of the measured ones', async () => {
  const since = Date.now() - 1_000;
  // 1: a burst from zero: two cold starts, then the rest queue behind them
  const first = await batch(6, 'sleep 1');
  await waitFor('the burst to finish', () => finished(first), 60_000);
  // 2: on warm runners: two at once, two queue
  const second = await batch(4, 'sleep 1');
  await waitFor('the second batch to finish', () => finished(second), 60_000);
  // 3: one at a time, each on a warm runner
  for (let i = 0; i < 3; i++) {
    const one = await batch(1, 'sleep 0.3');
    await waitFor('a single job to finish', () => finished(one), 30_000);
  }
  const trace = await readStoreTrace(t.server.db, since, Date.now() + 1_000);
  assert.equal(trace.jobs.length, 13);
  assert.ok(trace.startLatency?.kind === 'empirical' && trace.startLatency.samples.length === 2, 'two runners started, their start latency fitted');
  const measured = waitFigures(trace.jobs.map((j) => j.wait!));
  assert.ok(measured.max > 1_000, `the trace has queueing to reproduce (max wait ${measured.max} ms)`);

  const spec = readSpec(undefined);
  const pools = simPools(policyPools([POOL], { name: 'recorded', pools: {} }, 'pools'), spec, { startLatency: trace.startLatency, claimGap: trace.claimGap });
  const sim = new Simulation(pools, trace.jobs, { seed: 1, tickMs: 10_000, sloMs: 30_000 }).run();
  const report = (['p50', 'p95', 'p99'] as const).map((q) => ({ q, measured: measured[q], simulated: sim.wait[q] }));
  for (const r of report) {
    const tolerance = Math.max(50, 0.2 * r.measured);
    assert.ok(Math.abs(r.simulated - r.measured) <= tolerance, `${r.q}: simulated ${r.simulated} ms vs measured ${r.measured} ms (tolerance ${tolerance} ms); all: ${JSON.stringify(report)}`);
  }
  process.stderr.write(`fidelity: ${JSON.stringify(report)} start latencies ${JSON.stringify(trace.startLatency)}, claim gap ${trace.claimGap} ms\n`);
});
