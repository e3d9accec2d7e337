import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../lib/logger.js';
import { sleep } from '../../lib/clock.js';
import type { KubeClient } from './kube-client.js';
import { KubeApiError } from './kube-errors.js';

export type PodEvent = 'ADDED' | 'MODIFIED' | 'DELETED';

/** Watches end by themselves after about this long (the server closes them), then resume. */
const WATCH_TIMEOUT_S = 290;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;

/**
 * One label-filtered list+watch of runner pods in a namespace, kept as a cache. client-node's
 * Watch does not reconnect, so this loop does: after a clean end (timeoutSeconds) it resumes
 * from the last resourceVersion; after an error it waits a jittered, growing backoff; after 410
 * Gone it lists again (pods that vanished meanwhile are reported DELETED). Bookmarks keep the
 * resourceVersion fresh so a resume rarely needs the relist.
 */
export class PodWatch {
  readonly pods = new Map<string, V1Pod>();
  private rv = '';
  private closed = false;
  private abort: AbortController | undefined;
  private stop = new AbortController();
  private syncedOnce!: Promise<void>;
  private markSynced!: () => void;
  private loop: Promise<void> | undefined;
  /** How many times the loop listed (1 + relists after 410 or errors). */
  lists = 0;

  constructor(
    private client: KubeClient,
    readonly namespace: string,
    private selector: string,
    private onEvent: (type: PodEvent, pod: V1Pod) => void,
    private log: Logger,
  ) {
    this.syncedOnce = new Promise((ok) => (this.markSynced = ok));
  }

  start() {
    this.loop ??= this.run();
  }

  /** The last failure of the loop, while it has not listed yet (for the error of a caller that waits). */
  private lastError: unknown;

  /**
   * Resolves once the first list is in the cache; rejects after `timeoutMs` when the API has not
   * answered it, so a caller (reconcile) skips a round instead of waiting forever.
   */
  synced(timeoutMs = 15_000): Promise<void> {
    this.start();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, fail) => {
      timer = setTimeout(() => fail(new KubeApiError(`kubernetes API at ${this.client.server} has not answered the list of runner pods in ${this.namespace}${this.lastError ? `: ${(this.lastError as Error).message}` : ''}`, undefined, undefined, undefined, true)), timeoutMs);
      timer.unref?.();
    });
    return Promise.race([this.syncedOnce, late]).finally(() => clearTimeout(timer));
  }

  private async run() {
    let failures = 0;
    let needList = true;
    while (!this.closed) {
      try {
        if (needList) {
          await this.list();
          needList = false;
        }
        const outcome = await this.watchOnce();
        if (outcome === 'expired') {
          this.log.info({ namespace: this.namespace }, 'kubernetes watch expired (410); listing again');
          needList = true;
        }
        failures = outcome === 'error' ? failures + 1 : 0;
      } catch (err) {
        failures += 1;
        this.lastError = err;
        needList = needList || (err as { code?: number }).code === 410;
        this.log.warn({ err, namespace: this.namespace, failures }, 'kubernetes pod watch failed; retrying');
      }
      if (failures > 0 && !this.closed) {
        const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 10));
        await sleep(base / 2 + Math.random() * (base / 2), this.stop.signal);
      }
    }
  }

  private async list() {
    const res = await this.client.call('list pods', `list pods in ${this.namespace}`, () => this.client.api.listNamespacedPod({ namespace: this.namespace, labelSelector: this.selector }));
    this.lists += 1;
    const seen = new Set<string>();
    for (const pod of res.items) {
      const name = pod.metadata!.name!;
      seen.add(name);
      this.pods.set(name, pod);
      this.onEvent('MODIFIED', pod);
    }
    for (const [name, pod] of this.pods)
      if (!seen.has(name)) {
        this.pods.delete(name);
        this.onEvent('DELETED', pod);
      }
    this.rv = res.metadata?.resourceVersion ?? '';
    this.markSynced();
  }

  /** One watch from the cached resourceVersion until it ends: 'ok' (clean end), 'expired' or 'error'. */
  private watchOnce(): Promise<'ok' | 'expired' | 'error'> {
    this.client.count('watch pods');
    return new Promise((resolve) => {
      let outcome: 'ok' | 'expired' | 'error' = 'ok';
      let events = 0;
      const path = `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods`;
      const params = { labelSelector: this.selector, resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds: WATCH_TIMEOUT_S + Math.floor(Math.random() * 20) };
      void this.client.bucket.take().then(async () => {
        if (this.closed) return resolve('ok');
        this.abort = await this.client.watcher.watch(
          path,
          params,
          (type, obj) => {
            events += 1;
            if (type === 'ERROR') {
              outcome = obj?.code === 410 ? 'expired' : 'error';
              this.abort?.abort();
              return;
            }
            const rv = obj?.metadata?.resourceVersion;
            if (rv) this.rv = rv;
            if (type === 'BOOKMARK') return;
            const pod = obj as V1Pod;
            const name = pod.metadata?.name;
            if (!name) return;
            if (type === 'DELETED') this.pods.delete(name);
            else this.pods.set(name, pod);
            this.onEvent(type as PodEvent, pod);
          },
          (err) => {
            // an abrupt close comes as an error or as a close with nothing received: back off either way
            if (err && outcome === 'ok' && !this.closed) outcome = (err as { statusCode?: number }).statusCode === 410 ? 'expired' : 'error';
            if (!err && events === 0 && outcome === 'ok' && !this.closed) outcome = 'error';
            if (err && !this.closed && outcome === 'error') this.log.warn({ err: String((err as Error)?.message ?? err), namespace: this.namespace }, 'kubernetes pod watch ended');
            resolve(outcome);
          },
        );
      });
    });
  }

  async close() {
    this.closed = true;
    this.stop.abort();
    this.abort?.abort();
    this.markSynced();
    await this.loop;
  }
}
