/** Typed errors whose name is their meaning; the API maps `status` to HTTP. */
export class RunyardError extends Error {
  readonly status: number = 500;
  readonly code: string = 'internal';
  constructor(message: string, readonly field?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
export class InvalidError extends RunyardError {
  override readonly status = 400;
  override readonly code = 'invalid';
}
export class UnprocessableError extends RunyardError {
  override readonly status = 422;
  override readonly code = 'unprocessable';
}
export class UnauthorizedError extends RunyardError {
  override readonly status = 401;
  override readonly code = 'unauthorized';
}
export class ForbiddenError extends RunyardError {
  override readonly status = 403;
  override readonly code = 'forbidden';
}
export class NotFoundError extends RunyardError {
  override readonly status = 404;
  override readonly code = 'not_found';
}
export class ConflictError extends RunyardError {
  override readonly status = 409;
  override readonly code = 'conflict';
}
/** The runner was terminated: its agent must stop for good (not retry as for a 401). */
export class GoneError extends RunyardError {
  override readonly status = 410;
  override readonly code = 'gone';
}
export class TooLargeError extends RunyardError {
  override readonly status = 413;
  override readonly code = 'too_large';
}
/** The caller may try again later (server down, engine unreachable). */
export class RetryableError extends RunyardError {
  override readonly status = 503;
  override readonly code = 'unavailable';
}
