/** `Status` bodies as the kube-apiserver sends them with every error (and some successes). */
export interface StatusBody {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: { name?: string; kind?: string; causes?: { reason?: string; message: string; field?: string }[]; retryAfterSeconds?: number };
  code: number;
}

export function status(code: number, reason: string, message: string, details?: StatusBody['details']): StatusBody {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: code < 300 ? 'Success' : 'Failure', message, reason, ...(details ? { details } : {}), code };
}

/** resource names in messages are singular, as the real server writes them: pods "x" not found */
export const notFound = (resource: string, name: string) => status(404, 'NotFound', `${resource} "${name}" not found`, { name, kind: resource });
export const alreadyExists = (resource: string, name: string) => status(409, 'AlreadyExists', `${resource} "${name}" already exists`, { name, kind: resource });
export const conflict = (resource: string, name: string) =>
  status(409, 'Conflict', `Operation cannot be fulfilled on ${resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, kind: resource });
export const invalid = (kind: string, name: string, causes: { field: string; message: string }[]) =>
  status(422, 'Invalid', `${kind} "${name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}`, {
    name,
    kind: kind.toLowerCase() + 's',
    causes: causes.map((c) => ({ reason: 'FieldValueInvalid', message: c.message, field: c.field })),
  });
export const tooManyRequests = (seconds: number) => status(429, 'TooManyRequests', 'the server has received too many requests and has asked us to try again later', { retryAfterSeconds: seconds });
export const quotaExceeded = (name: string) =>
  status(403, 'Forbidden', `pods "${name}" is forbidden: exceeded quota: runner-quota, requested: pods=1, used: pods=10, limited: pods=10`, { name, kind: 'pods' });
export const expired = (rv: string, oldest: number) => status(410, 'Expired', `too old resource version: ${rv} (${oldest})`);
export const unauthorized = () => status(401, 'Unauthorized', 'Unauthorized');
