/*
 * One scale-from-zero measurement: submit `echo started` to a pool with no runner, wait for it,
 * and read when its runner was created and registered, when it was claimed and when its first
 * output line was stamped; then terminate the runner so the next run starts from zero again.
 */
import { waitFor } from './fleet.js';
import type { BenchServer } from './server.js';

export interface ColdJob {
  /** client send time of the submit (epoch ms) */
  t0: number;
  runnerId: string;
  runnerCreated: number;
  registered: number;
  claimed: number;
  /** the `t` the agent stamped on the job's first stdout line */
  firstOutput: number;
}

export async function coldJob(s: BenchServer, pool: string): Promise<ColdJob> {
  const t0 = performance.timeOrigin + performance.now();
  const { job } = await s.http.ok('POST', '/api/v1/jobs', { pool, command: 'echo started' });
  const done = await waitFor('cold job to finish', async () => {
    const [j] = await s.server.db.query<any>('select state, runner_id, claimed_at from jobs where id = $1', [job.id]);
    return j && ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
  }, 60_000, 10);
  if (done.state !== 'succeeded') throw new Error(`cold job ${job.id} ended ${done.state}`);
  const [runner] = await s.server.db.query<any>('select id, created_at, registered_at from runners where id = $1', [done.runner_id]);
  const logs = await s.server.db.query<any>('select lines from job_logs where job_id = $1 order by seq', [job.id]);
  const firstOutput = logs.flatMap((l: any) => l.lines).find((l: any) => l.s === 'o')?.t as number;
  return { t0, runnerId: runner.id, runnerCreated: runner.created_at.getTime(), registered: runner.registered_at.getTime(), claimed: done.claimed_at.getTime(), firstOutput };
}

/** Terminates the runner and waits until the store has it terminated. */
export async function stopRunner(s: BenchServer, runnerId: string): Promise<void> {
  await s.http.ok('POST', `/api/v1/runners/${runnerId}/terminate`, {});
  await waitFor('runner terminated', async () => (await s.server.db.query<any>('select state from runners where id = $1', [runnerId]))[0].state === 'terminated', 40_000, 50).catch(() => {});
}
