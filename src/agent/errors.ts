/** Errors of the agent, named by their meaning; each says what the operator can do. */

/** The server answered with a non-2xx status. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly code?: string) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The server could not be reached or did not answer in time. */
export class NetworkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NetworkError';
  }
}

/**
 * What a failed call to the server means for the agent, the same wherever it happens (after
 * buildkite-agent's error classes):
 *
 *   gone          410  the runner was terminated: stop for good, forget the identity
 *   unauthorized  401  the credential was refused (revoked, or another agent took this id)
 *   conflict      409  the claim (job, attempt) is no longer this runner's: drop that job unreported
 *   retry         no answer, 5xx, 429, 408: the server is down, overloaded or restarting
 *   fatal         any other answer (400, 403, 404, 413, 422…): the request is wrong; sending it
 *                 again will not help
 *
 * On a job call (start, logs, result) gone and unauthorized also mean the claim is lost.
 */
export type ErrorClass = 'gone' | 'unauthorized' | 'conflict' | 'retry' | 'fatal';

export function classify(err: unknown): ErrorClass {
  if (err instanceof NetworkError) return 'retry';
  if (err instanceof HttpError) return classifyStatus(err.status);
  return 'fatal';
}

/** The class of an HTTP status the server answered with (see classify). */
export function classifyStatus(status: number): ErrorClass {
  if (status === 410) return 'gone';
  if (status === 401) return 'unauthorized';
  if (status === 409) return 'conflict';
  if (status >= 500 || status === 429 || status === 408) return 'retry';
  return 'fatal';
}

/** Worth retrying: the server is down, overloaded or restarting. */
export function isRetryable(err: unknown): boolean {
  return classify(err) === 'retry';
}

/** The status of an answer, for logs (undefined when the server did not answer). */
export function statusOf(err: unknown): number | undefined {
  return err instanceof HttpError ? err.status : undefined;
}

/** Registration was refused for good (revoked token, wrong pool, invalid request). */
export class RegistrationRefusedError extends Error {
  readonly exitCode = 1;
  constructor(message: string) {
    super(message);
    this.name = 'RegistrationRefusedError';
  }
}

/** The server terminated this runner (410): its identity can never be used again. */
export class RunnerGoneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunnerGoneError';
  }
}

/** A pool `setup` command failed; the runner cannot take jobs. */
export class SetupFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SetupFailedError';
  }
}

/** An archive would write outside its directory (zip-slip, escaping symlink, device file). */
export class ArchiveRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveRefusedError';
  }
}

/** The state dir is in use by another live agent. */
export class StateDirLockedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateDirLockedError';
  }
}
