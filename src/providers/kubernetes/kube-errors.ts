/** A failed Kubernetes API call: the server's Status (code, reason, message, the field it names). */
export class KubeApiError extends Error {
  constructor(
    message: string,
    readonly code: number | undefined,
    readonly reason?: string,
    readonly field?: string,
    /** the cluster could not be reached or asked us to wait: worth trying again later */
    readonly retryable = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KubeApiError';
  }
}

/** The Status body of a client-node ApiException (a string or an object, depending on the call). */
export function statusOf(err: unknown): { code?: number; reason?: string; message?: string; details?: { causes?: { field?: string; message?: string }[]; retryAfterSeconds?: number } } | undefined {
  const e = err as { code?: unknown; body?: unknown };
  if (typeof e?.code !== 'number') return undefined;
  let body = e.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      body = { message: body };
    }
  }
  return { code: e.code, ...(body && typeof body === 'object' ? body : {}) } as ReturnType<typeof statusOf>;
}

export const isNotFound = (err: unknown) => (err as KubeApiError)?.code === 404;
export const isConflict = (err: unknown) => (err as KubeApiError)?.code === 409;
