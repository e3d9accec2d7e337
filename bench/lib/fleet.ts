/** Helpers around a server with real agent processes (started by the scheduler via the process provider). */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchServer } from './server.js';

export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 30_000, intervalMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function liveRunners(s: BenchServer, pool: string): Promise<{ id: string; state: string }[]> {
  return s.server.db.query(`select id, state from runners where pool = $1 and state <> 'terminated'`, [pool]);
}

/** Waits until `n` runners of the pool are registered and idle (warm). */
export async function waitWarm(s: BenchServer, pool: string, n: number, timeoutMs = 60_000): Promise<string[]> {
  const rows = await waitFor(`${n} idle runners in pool ${pool}${agentLogTail(s)}`, async () => {
    const r = await liveRunners(s, pool);
    const idle = r.filter((x) => x.state === 'idle');
    return idle.length >= n ? idle : undefined;
  }, timeoutMs, 100);
  // Registered is not quite ready: the agent still opens its control channel and parks a claim.
  await waitFor('control channels of warm runners', () => rows.every((r) => s.server.hub.isConnected(r.id)), timeoutMs);
  await sleep(300);
  return rows.map((r) => r.id);
}

/** Count of finished jobs (succeeded or otherwise), from the server's own counter. */
export async function finishedCount(s: BenchServer): Promise<{ total: number; byState: Record<string, number> }> {
  const m = await s.server.metrics.jobOutcomes.get();
  const byState: Record<string, number> = {};
  let total = 0;
  for (const v of m.values) {
    const st = String(v.labels.state);
    byState[st] = (byState[st] ?? 0) + v.value;
    total += v.value;
  }
  return { total, byState };
}

/** The last lines of the agents' logs, for error messages. */
export function agentLogTail(s: BenchServer, lines = 15): string {
  const dir = join(s.dataDir, 'logs', 'runners');
  if (!existsSync(dir)) return '';
  let out = '';
  for (const f of readdirSync(dir).slice(0, 2)) {
    const text = readFileSync(join(dir, f), 'utf8').trim().split('\n').slice(-lines).join('\n');
    out += `\n--- ${f} ---\n${text}`;
  }
  return out;
}

/** Parsed JSON log lines of every agent of this server. */
export function agentLogs(s: BenchServer): any[] {
  const dir = join(s.dataDir, 'logs', 'runners');
  if (!existsSync(dir)) return [];
  const out: any[] = [];
  for (const f of readdirSync(dir)) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        // partial line
      }
    }
  }
  return out;
}

export function agentPids(s: BenchServer): number[] {
  const dir = join(s.dataDir, 'runners');
  if (!existsSync(dir)) return [];
  const pids: number[] = [];
  for (const id of readdirSync(dir)) {
    try {
      pids.push(JSON.parse(readFileSync(join(dir, id, 'runner.json'), 'utf8')).pid);
    } catch {
      // not started yet / gone
    }
  }
  return pids;
}

/**
 * SIGTERM to every agent and wait for them to exit (they drain and exit 0), so agents started
 * with --cpu-prof write their profiles; server.close() alone kills them at once.
 */
export async function stopAgentsGracefully(s: BenchServer, timeoutMs = 15_000): Promise<void> {
  const pids = agentPids(s);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  await waitFor('agents to exit', () => pids.every((p) => !alive(p)), timeoutMs, 50).catch(() => {});
}
