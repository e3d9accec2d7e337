/*
 * Reference for section 3: how long a bare Node process (no runyard) takes from calling spawn()
 * to reading the first output line of `/bin/sh -c 'echo started'` (detached, piped, as the agent
 * starts a job), one at a time at `rate` per second: the floor of "submit → job started" for
 * any runner that starts a process per job on this machine.
 */
import { spawn } from 'node:child_process';
import { latencySummary } from '../lib/stats.js';

const [count, rate] = [Number(process.argv[2] ?? 200), Number(process.argv[3] ?? 20)];
const spawnMs: number[] = [];
const firstLineMs: number[] = [];
for (let i = 0; i < count; i++) {
  const t0 = performance.now();
  const c = spawn('/bin/sh', ['-c', 'echo started'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  spawnMs.push(performance.now() - t0);
  await new Promise<void>((r) => c.stdout.once('data', () => r()));
  firstLineMs.push(performance.now() - t0);
  await new Promise((r) => c.once('close', r));
  await new Promise((r) => setTimeout(r, 1000 / rate));
}
console.log(JSON.stringify({ spawn: latencySummary(spawnMs), firstLine: latencySummary(firstLineMs) }));
