/*
 * The EC2 calls the provider makes, with its retry policy. The SDK's own retries are off: they
 * treat InsufficientInstanceCapacity (HTTP 500) as transient and would ask the same subnet and
 * type again, where the provider wants the next one at once. Here throttling (RequestLimitExceeded)
 * and lost connections back off exponentially with full jitter; a lost answer to RunInstances is
 * asked again with the same ClientToken, so EC2 returns the instance it already launched instead
 * of a second one.
 */
import {
  EC2Client,
  paginateDescribeInstances,
  DescribeInstanceStatusCommand,
  type Filter,
  type Instance,
  type InstanceStatus,
} from '@aws-sdk/client-ec2';
import type { Logger } from '../../lib/logger.js';
import { ApiCallTally } from '../api-calls.js';

export const THROTTLING = new Set(['RequestLimitExceeded', 'Throttling', 'ThrottlingException', 'RequestThrottled', 'EC2ThrottledException']);
const TRANSIENT_CODES = new Set(['InternalError', 'Unavailable', 'ServiceUnavailable', 'TimeoutError', 'RequestTimeout']);
const NETWORK = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_SOCKET']);
export const CAPACITY = new Set(['InsufficientInstanceCapacity', 'InsufficientCapacity', 'InsufficientHostCapacity', 'InsufficientFreeAddressesInSubnet', 'Unsupported']);

/** The EC2 error code of a failure (`InvalidInstanceID.NotFound`), or a network error code. */
export function errorCode(err: unknown): string {
  const e = err as { name?: string; Code?: string; code?: string; cause?: { code?: string } };
  return e?.Code ?? (e?.name && e.name !== 'Error' ? e.name : undefined) ?? e?.code ?? e?.cause?.code ?? 'Unknown';
}

export function isRetryable(err: unknown): boolean {
  const code = errorCode(err);
  if (THROTTLING.has(code) || TRANSIENT_CODES.has(code) || NETWORK.has(code)) return true;
  const msg = String((err as Error)?.message ?? '');
  return /socket hang up|ECONNRESET|other side closed|ECONNREFUSED/i.test(msg);
}

/** A failed EC2 call: what was asked, where, and the code EC2 answered. */
export class Ec2ApiError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  constructor(what: string, where: string, readonly cause: unknown) {
    const code = errorCode(cause);
    super(`EC2 ${what} at ${where} failed: ${code}: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'Ec2ApiError';
    this.code = code;
    this.retryable = isRetryable(cause) || CAPACITY.has(code);
  }
}

export interface Ec2ApiOptions {
  region: string;
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  log: Logger;
  sleep: (ms: number) => Promise<void>;
  /** attempts for throttled or lost calls (default 8) */
  maxAttempts?: number;
  /** first backoff step in ms (default 250; doubles, capped at 20 s, full jitter) */
  baseDelayMs?: number;
}

export class Ec2Api {
  readonly client: EC2Client;
  readonly where: string;
  /** calls answered RequestLimitExceeded (or another throttling code), for tests and logs */
  throttled = 0;
  /** calls made, by operation (every attempt; a paginated describe counts once) */
  readonly tally = new ApiCallTally();

  constructor(private opts: Ec2ApiOptions) {
    this.client = new EC2Client({ region: opts.region, endpoint: opts.endpoint, credentials: opts.credentials, maxAttempts: 1 });
    this.where = opts.endpoint ?? `ec2.${opts.region}`;
  }

  /** One EC2 call with the provider's retries. */
  async call<T>(what: string, fn: (c: EC2Client) => Promise<T>): Promise<T> {
    const max = this.opts.maxAttempts ?? 8;
    const base = this.opts.baseDelayMs ?? 250;
    for (let attempt = 1; ; attempt++) {
      this.tally.count(what);
      try {
        return await fn(this.client);
      } catch (err) {
        const code = errorCode(err);
        if (THROTTLING.has(code)) this.throttled += 1;
        if (!isRetryable(err) || attempt >= max) throw new Ec2ApiError(what, this.where, err);
        const delay = Math.random() * Math.min(20_000, base * 2 ** (attempt - 1));
        this.opts.log.warn({ what, code, attempt, delayMs: Math.round(delay) }, 'EC2 call failed; backing off');
        await this.opts.sleep(delay);
      }
    }
  }

  /** Every instance matching the filters, through DescribeInstances' pages. */
  async describe(filters: Filter[]): Promise<Instance[]> {
    return this.call('DescribeInstances', async (client) => {
      const out: Instance[] = [];
      for await (const page of paginateDescribeInstances({ client, pageSize: 100 }, { Filters: filters }))
        for (const r of page.Reservations ?? []) out.push(...(r.Instances ?? []));
      return out;
    });
  }

  async statuses(ids: string[]): Promise<InstanceStatus[]> {
    if (ids.length === 0) return [];
    const out: InstanceStatus[] = [];
    // by id, 100 at a time: EC2 takes no MaxResults next to InstanceIds
    for (let i = 0; i < ids.length; i += 100) {
      const page = await this.call('DescribeInstanceStatus', (c) => c.send(new DescribeInstanceStatusCommand({ InstanceIds: ids.slice(i, i + 100) })));
      out.push(...(page.InstanceStatuses ?? []));
    }
    return out;
  }
}
