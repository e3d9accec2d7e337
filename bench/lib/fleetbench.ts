import { resolve } from 'node:path';
/** Shared set-up for sections that run jobs on real agent processes. */
import { startBenchServer, type BenchServer } from './server.js';
import { agentPids, stopAgentsGracefully, waitWarm } from './fleet.js';
import { pgBackendPids } from './proc.js';

/** Warm runners, several jobs each: the brief's pool. */
export const BENCH_POOL = { name: 'bench', maxRunners: 4, maxJobsPerRunner: 8, minIdle: 4 };

export async function startFleet(opts: { store: 'postgres' | 'pglite'; pool?: Record<string, unknown>; tag?: string; config?: Record<string, unknown> }): Promise<BenchServer> {
  const pool = { ...BENCH_POOL, ...opts.pool };
  // Profiling (bench/run.ts --profile): agents inherit NODE_OPTIONS through the process provider
  // (--cpu-prof is not allowed there, so a --require hook drives the profiler).
  if (process.env.BENCH_PROFILE_DIR) {
    process.env.NODE_OPTIONS = `--require ${resolve(import.meta.dirname, 'cpu-prof-hook.cjs')}`;
    process.env.BENCH_AGENT_PROFILE_DIR = `${process.env.BENCH_PROFILE_DIR}/agents`;
  }
  const s = await startBenchServer({ store: opts.store, tag: opts.tag, config: { ...opts.config, pools: [pool] } });
  try {
    await waitWarm(s, pool.name as string, pool.minIdle as number, 90_000);
  } catch (err) {
    await s.close().catch(() => {});
    throw err;
  }
  return s;
}

/** Process groups for the CPU sampler. */
export function cpuGroups(s: BenchServer, extra: Record<string, () => number[]> = {}) {
  return () => {
    const g: Record<string, number[]> = {
      'runyard server (this process)': [process.pid],
      'agents (node)': agentPids(s),
      ...(s.dbName ? { 'PostgreSQL backends of this database': pgBackendPids(s.dbName) } : {}),
    };
    for (const [k, f] of Object.entries(extra)) g[k] = f();
    return g;
  };
}

/** Closes a fleet; when profiling, agents are stopped gracefully first so they write profiles. */
export async function closeFleet(s: BenchServer): Promise<void> {
  if (process.env.BENCH_PROFILE_DIR) await stopAgentsGracefully(s);
  await s.close();
}
