/*
 * Experiment (not part of `npm run bench`): a `runyard agent` process from its start to its
 * first requests, against the fake control plane of the agent tests (test/helpers/fake-runyard.ts),
 * so the figures are the agent's own (no database, no scheduler). Several entry points can be
 * compared in one run, alternated so the machine's load hits them alike:
 *   node --import tsx bench/experiments/agent-boot.ts [bin/runyard.js /other/checkout/bin/runyard.js]
 * RUNS (default 9) sets the iterations; NODE_ARGS passes options to node (e.g. --cpu-prof).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { FakeRunyard, type Endpoint } from '../../test/helpers/fake-runyard.js';
import { median } from '../lib/stats.js';

const runs = Number(process.env.RUNS ?? 9);
const bins = process.argv.slice(2).length ? process.argv.slice(2) : ['bin/runyard.js'];
const nodeArgs = (process.env.NODE_ARGS ?? '').split(' ').filter(Boolean);
const stages: Endpoint[] = ['register', 'claim', 'control'];
const fake = await FakeRunyard.start({ config: { heartbeatIntervalMs: 5000, leaseMs: 15_000, leaseKillGraceMs: 1000 } });
const samples = new Map<string, Record<string, number>[]>();
const load = loadavg()[0]!;
for (let i = 0; i < runs; i++) {
  for (const bin of bins) {
    const dir = mkdtempSync(join(tmpdir(), 'runyard-agent-boot-'));
    const t0 = performance.now();
    const at: Record<string, number> = {};
    const seen = stages.map((e) => fake.next(e).then(() => (at[e] = performance.now() - t0)));
    const child = spawn(process.execPath, [...nodeArgs, resolve(bin), 'agent', '--server', fake.url, '--state-dir', join(dir, 'state'), '--id', randomUUID()], {
      env: { PATH: process.env.PATH, HOME: dir, RUNYARD_REGISTRATION_TOKEN: 'ryd_reg_fake', RUNYARD_LOG_FORMAT: 'json' },
      stdio: 'ignore',
    });
    await Promise.all(seen);
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
    samples.set(bin, [...(samples.get(bin) ?? []), at]);
  }
}
await fake.close();
console.log(`${runs} runs each, load average ${load.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}; ms from spawn until the fake received:`);
for (const [bin, xs] of samples) {
  console.log(bin);
  for (const s of stages) console.log(`  ${s.padEnd(9)} p50 ${median(xs.map((x) => x[s]!)).toFixed(1).padStart(6)}   runs ${xs.map((x) => Math.round(x[s]!)).join(' ')}`);
}
