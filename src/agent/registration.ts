/**
 * Registration: retried until the server accepts us or refuses for good.
 *
 *   201        -> registered (credential + config)
 *   401        -> token unknown or expired (maybe not yet valid on this server): retry
 *   5xx, down  -> retry
 *   403        -> refused (revoked token, wrong kind, bad key): give up
 *   410        -> this runner id was terminated: give up
 *   other 4xx  -> the request is wrong: give up
 */
import type { Logger } from '../lib/logger.js';
import type { Backoff, Sleep } from './backoff.js';
import { RegistrationRefusedError, RunnerGoneError, classify, statusOf } from './errors.js';
import type { RegisterRequest, RegisterResponse } from '../protocol/runner.js';
import type { RunnerClient } from './runner-client.js';

export interface RegistrationDeps {
  client: RunnerClient;
  backoff: Backoff;
  sleep: Sleep;
  log: Logger;
  signal: AbortSignal;
  /** The clock `sentAt` is read from (the lease's). */
  now?: () => number;
}

/** The answer, and when the request that got it was sent (the runner's lease counts from then). */
export async function registerWithRetry(token: string, body: RegisterRequest, deps: RegistrationDeps): Promise<RegisterResponse & { sentAt: number }> {
  const { client, backoff, sleep, log, signal } = deps;
  for (;;) {
    if (signal.aborted) throw new Error('registration cancelled: the agent is stopping');
    try {
      const sentAt = deps.now?.() ?? 0;
      const res = await client.register(token, body, signal);
      backoff.reset();
      return { ...res, sentAt };
    } catch (err) {
      if (signal.aborted) throw new Error('registration cancelled: the agent is stopping');
      const cls = classify(err);
      const status = statusOf(err);
      if (cls === 'gone') throw new RunnerGoneError(`runner ${body.id} was terminated on the server (${(err as Error).message}); this identity cannot be used again: start the agent again to register as a new runner (with a new --id if you pass one)`);
      // 401 is the registration token's, not a credential's: it may not be valid on this server yet
      if (cls !== 'retry' && cls !== 'unauthorized') throw new RegistrationRefusedError(status === 403 ? `registration refused: ${(err as Error).message}` : `registration refused (HTTP ${status ?? '?'}): ${(err as Error).message}`);
      const delayMs = backoff.next();
      log.warn({ attempt: backoff.failures, delayMs, status, reason: (err as Error).message }, 'registration failed; retrying');
      await sleep(delayMs, signal);
    }
  }
}
