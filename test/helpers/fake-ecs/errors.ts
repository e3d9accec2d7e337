/** An ECS API error as the service answers it: HTTP status, `__type` and message. */
export class EcsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export const invalid = (message: string) => new EcsError('InvalidParameterException', message);
export const client = (message: string) => new EcsError('ClientException', message);
