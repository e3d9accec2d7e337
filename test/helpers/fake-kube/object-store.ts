/*
 * The fake API server's storage, as etcd behind a kube-apiserver looks to a client: one
 * monotonic resourceVersion for every write, a bounded history of changes that watches replay
 * from (older versions answer 410 Expired), and watchers fed each change as it is committed.
 */
import { randomUUID } from 'node:crypto';

export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
    generateName?: string;
    finalizers?: string[];
    [k: string]: unknown;
  };
  [k: string]: any;
};

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';
export interface Change {
  rv: number;
  type: EventType;
  resource: string;
  object: KubeObject;
}
type Watcher = (c: Change) => void;

/** A label selector as the API reads it: `a=b,c!=d,e in (f,g),h notin (i),j,!k`. */
export function parseLabelSelector(text: string | undefined): (labels: Record<string, string> | undefined) => boolean {
  if (!text) return () => true;
  const terms: ((l: Record<string, string>) => boolean)[] = [];
  // split on commas outside parentheses
  const parts = text.match(/([^,(]+(\([^)]*\))?)+/g) ?? [];
  for (const raw of parts) {
    const p = raw.trim();
    let m;
    if ((m = p.match(/^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/))) {
      const [, k, op, v] = m as unknown as [string, string, string, string];
      terms.push(op === '!=' ? (l) => l[k] !== v : (l) => l[k] === v);
    } else if ((m = p.match(/^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/))) {
      const [, k, op, list] = m as unknown as [string, string, string, string];
      const vals = new Set(list.split(',').map((s) => s.trim()));
      terms.push(op === 'in' ? (l) => l[k] !== undefined && vals.has(l[k]!) : (l) => l[k] === undefined || !vals.has(l[k]!));
    } else if ((m = p.match(/^!([\w./-]+)$/))) {
      const k = m[1]!;
      terms.push((l) => l[k] === undefined);
    } else if ((m = p.match(/^([\w./-]+)$/))) {
      const k = m[1]!;
      terms.push((l) => l[k] !== undefined);
    } else throw new SelectorError(`unable to parse requirement: ${JSON.stringify(p)}`);
  }
  return (labels) => terms.every((t) => t(labels ?? {}));
}

/** Field selectors kubectl sends: metadata.name, metadata.namespace, involvedObject.* (events). */
export function parseFieldSelector(text: string | undefined): (o: KubeObject) => boolean {
  if (!text) return () => true;
  const terms = text.split(',').map((p) => {
    const m = p.trim().match(/^([\w.]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw new SelectorError(`invalid field selector: ${JSON.stringify(p)}`);
    const path = m[1]!.split('.');
    return (o: KubeObject) => {
      let v: any = o;
      for (const k of path) v = v?.[k];
      const equal = String(v ?? '') === m[3];
      return m[2] === '!=' ? !equal : equal;
    };
  });
  return (o) => terms.every((t) => t(o));
}

export class SelectorError extends Error {}

export class ObjectStore {
  private rv = 1;
  private objects = new Map<string, Map<string, KubeObject>>();
  private history: Change[] = [];
  private watchers = new Set<{ resource: string; fn: Watcher }>();

  /** `historySize`: how many changes a watch can replay from (older versions answer 410). */
  constructor(private historySize = 200) {}

  get resourceVersion(): number {
    return this.rv;
  }

  private bucket(resource: string) {
    let b = this.objects.get(resource);
    if (!b) this.objects.set(resource, (b = new Map()));
    return b;
  }

  private key(ns: string | undefined, name: string) {
    return `${ns ?? ''}/${name}`;
  }

  get(resource: string, ns: string | undefined, name: string): KubeObject | undefined {
    const o = this.bucket(resource).get(this.key(ns, name));
    return o && structuredClone(o);
  }

  list(resource: string, ns?: string): KubeObject[] {
    return [...this.bucket(resource).values()].filter((o) => !ns || o.metadata.namespace === ns).map((o) => structuredClone(o));
  }

  /** Stores a new object: uid, creationTimestamp and the next resourceVersion are the server's. */
  create(resource: string, obj: KubeObject, now: Date): KubeObject {
    const stored = structuredClone(obj);
    stored.metadata.uid = randomUUID();
    stored.metadata.creationTimestamp = now.toISOString().replace(/\.\d+Z$/, 'Z');
    return this.commit(resource, 'ADDED', stored);
  }

  /** Replaces a stored object (the caller has merged its change); bumps the resourceVersion. */
  update(resource: string, obj: KubeObject): KubeObject {
    return this.commit(resource, 'MODIFIED', structuredClone(obj));
  }

  remove(resource: string, ns: string | undefined, name: string): KubeObject | undefined {
    const b = this.bucket(resource);
    const o = b.get(this.key(ns, name));
    if (!o) return undefined;
    b.delete(this.key(ns, name));
    return this.commit(resource, 'DELETED', o, false);
  }

  private commit(resource: string, type: EventType, obj: KubeObject, store = true): KubeObject {
    this.rv += 1;
    obj.metadata.resourceVersion = String(this.rv);
    if (store) this.bucket(resource).set(this.key(obj.metadata.namespace, obj.metadata.name), obj);
    const change: Change = { rv: this.rv, type, resource, object: structuredClone(obj) };
    this.history.push(change);
    if (this.history.length > this.historySize) this.history.splice(0, this.history.length - this.historySize);
    for (const w of this.watchers) if (w.resource === resource) w.fn(change);
    return structuredClone(obj);
  }

  /**
   * Changes after `fromRv` for a watch to replay, or 'expired' when the history no longer
   * reaches back that far (the client must relist).
   */
  since(resource: string, fromRv: number): Change[] | 'expired' {
    const oldest = this.history[0]?.rv ?? this.rv + 1;
    if (fromRv < this.rv && fromRv < oldest - 1) return 'expired';
    return this.history.filter((c) => c.rv > fromRv && c.resource === resource);
  }

  /** Forgets every change so far: any watch from an older version gets 410 (a compaction). */
  compact() {
    this.history = [];
  }

  subscribe(resource: string, fn: Watcher): () => void {
    const w = { resource, fn };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }
}
