/*
 * The one way a runner ends, whoever ends it (operator terminate or delete, the agent's
 * deregister, the scheduler, a provider reporting it gone, a failed start): in one transaction
 * its jobs go back to the queue (or fail), it moves to terminated with the reason, and every
 * token bound to it is revoked, its launch token included. Then (src/app/runners.ts) this
 * server's auth cache and listeners are told. Other servers need no message: every runner call checks the runner's
 * state in the statement it already runs (heartbeat view, claim, the claim fences of
 * start/logs/result, control, artifacts) and answers 410 at once; see src/api/auth.ts.
 */
import type { Queryable } from '../store/db.js';
import { activeJobIdsOfRunner, recoverJobs } from './recover.js';
import type { Runner } from '../store/queries/runners.js';
import { moveRunner } from '../store/queries/runner-transitions.js';
import { revokeRunnerTokens } from '../store/queries/tokens.js';

export interface Termination {
  /** the runner as terminated; undefined when it was terminated already (or unknown) */
  runner: Runner | undefined;
  /** its jobs, moved back to the queue or failed */
  moved: { id: number; to: string }[];
  pool: string | undefined;
}

/** The store's part, for callers that must do more in the same transaction. */
export async function terminateRunnerTx(
  tx: Queryable,
  now: number,
  runnerId: string,
  reason: string,
  opts: { actor?: string; jobsReason?: string } = {},
): Promise<Termination> {
  // The runner's row first, as claims lock it: a claim racing this one waits, then sees it gone.
  const t = await moveRunner(tx, now, runnerId, 'terminate', reason, { actor: opts.actor ?? 'scheduler' });
  const runner = t.moved ? t.runner : undefined;
  const moved = await recoverJobs(tx, now, await activeJobIdsOfRunner(tx, runnerId), opts.jobsReason ?? `runner stopped: ${reason}`, { runnerId });
  await revokeRunnerTokens(tx, now, runnerId, { launch: true });
  const pool = runner?.pool ?? (moved.length ? (await tx.query<{ pool: string }>('select pool from runners where id = $1', [runnerId]))[0]?.pool : undefined);
  return { runner, moved, pool };
}
