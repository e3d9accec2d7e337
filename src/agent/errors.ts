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

/** Worth retrying: the server is down, overloaded or restarting. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof NetworkError) return true;
  if (err instanceof HttpError) return err.status >= 500 || err.status === 429 || err.status === 408;
  return false;
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
