import { existsSync } from 'node:fs';
import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import type { Logger } from '../../lib/logger.js';
import { sleep as realSleep } from '../../lib/clock.js';
import { TokenBucket } from '../../lib/token-bucket.js';
import { KubeApiError, statusOf } from './kube-errors.js';
import { ApiCallTally } from '../api-calls.js';

export interface Connection {
  /** A kubeconfig file; undefined: in-cluster when there, else $KUBECONFIG or ~/.kube/config. */
  kubeconfig?: string;
  context?: string;
  qps: number;
  burst: number;
}

export const connectionKey = (c: Pick<Connection, 'kubeconfig' | 'context'>) => `${c.kubeconfig ?? ''}#${c.context ?? ''}`;

/** How long a refused call is retried (429 with Retry-After, 403 exceeded quota) before it fails. */
const RETRY_BUDGET_MS = 60_000;
const QUOTA_WAIT_MS = 2_000;
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

/**
 * One cluster connection: client-node's CoreV1Api behind a token bucket, with the API's own
 * back-pressure honoured (429 Retry-After, 403 exceeded quota: wait and retry) and every call
 * counted by operation. Errors become KubeApiError with the server's message and field.
 */
export class KubeClient {
  readonly api: CoreV1Api;
  readonly watcher: Watch;
  readonly server: string;
  readonly bucket: TokenBucket;
  /** API calls made, by operation (list pods, watch pods, create pod, …). */
  readonly tally = new ApiCallTally();
  private readonly config: KubeConfig;

  constructor(
    readonly connection: Connection,
    private log: Logger,
    private env: NodeJS.ProcessEnv = process.env,
    private sleep: (ms: number) => Promise<void> = realSleep,
  ) {
    this.config = new KubeConfig();
    try {
      if (connection.kubeconfig) {
        if (!existsSync(connection.kubeconfig)) throw new Error(`no such file`);
        this.config.loadFromFile(connection.kubeconfig);
      } else if (env.KUBERNETES_SERVICE_HOST) this.config.loadFromCluster();
      else if (env.KUBECONFIG) this.config.loadFromFile(env.KUBECONFIG.split(':')[0]!);
      else this.config.loadFromDefault();
      if (connection.context) {
        if (!this.config.getContextObject(connection.context)) throw new Error(`it has no context ${JSON.stringify(connection.context)}`);
        this.config.setCurrentContext(connection.context);
      }
    } catch (err) {
      throw new KubeApiError(`kubernetes config ${connection.kubeconfig ? JSON.stringify(connection.kubeconfig) : '(in-cluster or default)'} could not be loaded: ${(err as Error).message}`, undefined, 'ConfigError', 'kubernetes.kubeconfig', false, { cause: err });
    }
    const cluster = this.config.getCurrentCluster();
    if (!cluster) throw new KubeApiError('kubernetes config has no current cluster', undefined, 'ConfigError', 'kubernetes.context');
    this.server = cluster.server;
    this.api = this.config.makeApiClient(CoreV1Api);
    this.watcher = new Watch(this.config);
    this.bucket = new TokenBucket(connection.qps, connection.burst); // client-go's qps/burst
  }

  count(op: string) {
    this.tally.count(op);
  }

  /** Total calls, or those of the operations named. */
  total(...ops: string[]): number {
    return this.tally.total(...ops);
  }

  /**
   * Runs one API call under the rate limit. 429 waits its Retry-After, 403 "exceeded quota" waits
   * and tries again, both within a budget; anything else fails at once with the server's words.
   */
  async call<T>(op: string, what: string, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + RETRY_BUDGET_MS;
    for (let attempt = 1; ; attempt++) {
      await this.bucket.take();
      this.count(op);
      try {
        return await fn();
      } catch (err) {
        const e = this.explain(what, err);
        let wait: number | undefined;
        if (e.code === 429) wait = retryAfterMs(err) ?? 1_000;
        else if (e.code === 403 && /exceeded quota/i.test(e.message)) wait = Math.min(QUOTA_WAIT_MS * attempt, 10_000);
        if (wait === undefined || Date.now() + wait > deadline) throw e;
        this.log.warn({ op, code: e.code, waitMs: wait, server: this.server }, e.code === 429 ? 'kubernetes API throttled us; waiting' : 'kubernetes quota exceeded; waiting');
        await this.sleep(wait);
      }
    }
  }

  /** A client-node failure as a KubeApiError naming what was done, where, and the field at fault. */
  explain(what: string, err: unknown): KubeApiError {
    if (err instanceof KubeApiError) return err;
    const s = statusOf(err);
    if (s?.code) {
      const field = s.details?.causes?.find((c) => c.field)?.field;
      const msg = s.message || (err as Error).message;
      return new KubeApiError(`kubernetes API at ${this.server} refused ${what}: ${msg}`, s.code, s.reason, field, s.code === 429 || s.code >= 500, { cause: err });
    }
    const code = (err as { code?: string; cause?: { code?: string } })?.code ?? (err as { cause?: { code?: string } })?.cause?.code;
    const unreachable = (typeof code === 'string' && UNREACHABLE.has(code)) || /ECONNREFUSED|socket hang up|network|fetch failed/i.test(String((err as Error)?.message));
    return new KubeApiError(`kubernetes API at ${this.server} ${unreachable ? 'unreachable' : 'failed'} (${what}): ${(err as Error)?.message ?? err}`, undefined, undefined, undefined, unreachable, { cause: err });
  }
}

function retryAfterMs(err: unknown): number | undefined {
  const h = (err as { headers?: Record<string, string> })?.headers?.['retry-after'];
  const fromHeader = h !== undefined && /^\d+$/.test(h.trim()) ? Number(h) * 1000 : undefined;
  const fromBody = statusOf(err)?.details?.retryAfterSeconds;
  return fromHeader ?? (fromBody !== undefined ? fromBody * 1000 : undefined);
}
