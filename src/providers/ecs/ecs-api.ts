import { ECSClient } from '@aws-sdk/client-ecs';
import { sleep as realSleep } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import type { EcsPoolFields } from './pool-config.js';
import { ApiCallTally } from '../api-calls.js';

/** An ECS call failed: the message names the operation and ECS's own error. */
export class EcsApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly retryable: boolean,
    readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'EcsApiError';
  }
}

const RETRYABLE = new Set(['ThrottlingException', 'ServerException', 'ServiceUnavailableException', 'RequestLimitExceeded', 'TooManyRequestsException']);

export interface EcsApiOptions {
  log: Logger;
  sleep?: (ms: number) => Promise<void>;
  /** Tries of a throttled call before it fails (default 6). */
  attempts?: number;
  /** First backoff after a throttled call, doubled each time up to 5 s (default 200 ms). */
  backoffMs?: number;
}

/**
 * One ECS endpoint (region + optional endpoint), with the SDK's default credential chain. The
 * SDK's own retries are off: throttling and server errors back off here, with jitter and an
 * injected sleep, so the launch path's waiting is visible in logs and tests.
 */
export class EcsApi {
  readonly client: ECSClient;
  /** calls sent, by operation (every attempt) */
  readonly tally = new ApiCallTally();
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    readonly fields: Pick<EcsPoolFields, 'region' | 'endpoint'>,
    private opts: EcsApiOptions,
    credentials?: { accessKeyId: string; secretAccessKey: string },
  ) {
    this.sleep = opts.sleep ?? realSleep;
    this.client = new ECSClient({
      region: fields.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      ...(fields.endpoint ? { endpoint: fields.endpoint } : {}),
      ...(credentials ? { credentials } : {}),
      maxAttempts: 1,
    });
  }

  static key(fields: Pick<EcsPoolFields, 'region' | 'endpoint'>): string {
    return `${fields.region ?? ''}|${fields.endpoint ?? ''}`;
  }

  /** Sends one command (`new RunTaskCommand(…)`); the caller names its output type. */
  async send<O>(what: string, command: { readonly input: object }): Promise<O> {
    const attempts = this.opts.attempts ?? 6;
    for (let attempt = 1; ; attempt++) {
      this.tally.count(what);
      try {
        return (await this.client.send(command as never)) as O;
      } catch (err) {
        const code = (err as { name?: string }).name ?? 'Error';
        const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        const network = !status && /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|socket hang up/i.test(String((err as Error).message));
        const retryable = RETRYABLE.has(code) || (status !== undefined && status >= 500) || network;
        if (!retryable || attempt >= attempts) throw new EcsApiError(`ECS ${what} failed: ${code}: ${(err as Error).message}`, code, retryable, err);
        const wait = Math.min(5_000, (this.opts.backoffMs ?? 200) * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
        this.opts.log.warn({ what, code, attempt, waitMs: Math.round(wait) }, 'ECS call refused; backing off');
        await this.sleep(wait);
      }
    }
  }

  close(): void {
    this.client.destroy();
  }
}
