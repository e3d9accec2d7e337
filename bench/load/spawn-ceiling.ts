/*
 * Reference: how many `/bin/sh -c true` processes Node can start and reap per second on this
 * machine, with nothing else of runyard around — the ceiling for any runner that runs each job
 * as a process. `procs` processes, each with `inFlight` children at a time, for `ms`.
 */
import { fork, spawn } from 'node:child_process';

const [mode, procs, inFlight, ms] = [process.argv[2], Number(process.argv[3] ?? 4), Number(process.argv[4] ?? 8), Number(process.argv[5] ?? 5000)];

if (mode === 'worker') {
  let n = 0;
  let spawnMs = 0;
  const end = performance.now() + ms;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        const c = spawn('/bin/sh', ['-c', 'true'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
        spawnMs += performance.now() - t;
        await new Promise((r) => c.once('close', r));
        n++;
      }
    }),
  );
  process.send!({ n, spawnMs });
  process.exit(0);
} else {
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: procs }, () => {
      const c = fork(new URL(import.meta.url).pathname, ['worker', String(procs), String(inFlight), String(ms)], { execArgv: ['--import', 'tsx'], env: { ...process.env, NODE_OPTIONS: '' } });
      return new Promise<{ n: number; spawnMs: number }>((r) => c.once('message', (m: any) => r(m)));
    }),
  );
  const s = (performance.now() - t0) / 1000;
  const n = results.reduce((a, r) => a + r.n, 0);
  const spawnMs = results.reduce((a, r) => a + r.spawnMs, 0);
  console.log(JSON.stringify({ perS: n / (ms / 1000), n, wallS: s, spawnBlockMs: spawnMs / n }));
}
