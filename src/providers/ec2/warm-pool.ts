/*
 * The warm pool's decisions, kept apart from the EC2 calls that apply them (pure: instances and
 * the time in, a decision out). The seed's states map onto what EC2 and runyard already record:
 *
 *   seed        EC2 instance                      runyard runner
 *   created     pending / running, new            starting (launched, not registered)
 *   running     running                           idle or busy (registered, taking jobs)
 *   claimed     stopped → pending (reused)        starting (a new runner id on the old instance)
 *   idle        stopped, in the warm pool          — (no runner: the last one is terminated)
 *   terminated  shutting-down / terminated         terminated (reason recorded)
 *
 * An instance is released (its runner finished, or idled past idleTimeout) to `stopped` while the
 * pool has room and the instance is healthy and young enough; otherwise it is terminated.
 */

export interface PoolInstance {
  id: string;
  state: string;
  pool: string;
  /** the pool config hash the instance was launched with */
  config: string;
  /** when it was first launched (ms), across reuses */
  createdAt: number;
  /** when it should be terminated at the latest (ms) */
  expiresAt: number;
  spot: boolean;
}

export interface WarmPolicy {
  pool: string;
  config: string;
  stopped: number;
}

/** Stop (keep for reuse) or terminate a released instance; `others` are the pool's other instances. */
export function releaseDecision(inst: PoolInstance, others: PoolInstance[], policy: WarmPolicy | undefined, now: number): { action: 'stop' | 'terminate'; reason: string } {
  if (!policy || policy.stopped === 0) return { action: 'terminate', reason: 'the pool keeps no stopped instances' };
  if (inst.spot) return { action: 'terminate', reason: 'a spot instance cannot be stopped' };
  if (inst.config !== policy.config) return { action: 'terminate', reason: 'launched with an older pool config' };
  if (now >= inst.expiresAt) return { action: 'terminate', reason: 'past the pool maxLifetime' };
  const kept = others.filter((o) => o.id !== inst.id && o.pool === inst.pool && (o.state === 'stopped' || o.state === 'stopping')).length;
  if (kept >= policy.stopped) return { action: 'terminate', reason: `the warm pool is full (${kept} of ${policy.stopped} stopped)` };
  return { action: 'stop', reason: `kept stopped for reuse (${kept + 1} of ${policy.stopped})` };
}

/**
 * Refresh: stopped instances to terminate, with why: past their lifetime (known from their own
 * tags, so even a pool this server no longer knows is cleaned), launched with an old config, or
 * beyond the pool's warm size (the oldest go first).
 */
export function refreshPlan(instances: PoolInstance[], policies: Map<string, WarmPolicy>, now: number): { id: string; reason: string }[] {
  const out: { id: string; reason: string }[] = [];
  const stopped = instances.filter((i) => i.state === 'stopped');
  const byPool = new Map<string, PoolInstance[]>();
  for (const i of stopped) {
    if (now >= i.expiresAt) out.push({ id: i.id, reason: 'past the pool maxLifetime' });
    else {
      const policy = policies.get(i.pool);
      if (policy && i.config !== policy.config) out.push({ id: i.id, reason: 'launched with an older pool config' });
      else if (policy) byPool.set(i.pool, [...(byPool.get(i.pool) ?? []), i]);
    }
  }
  for (const [pool, list] of byPool) {
    const keep = policies.get(pool)!.stopped;
    const newestFirst = [...list].sort((a, b) => b.createdAt - a.createdAt);
    for (const i of newestFirst.slice(keep)) out.push({ id: i.id, reason: `the warm pool is over its size (${keep})` });
  }
  return out;
}

/** Which stopped instance a new runner takes: the newest launched, so old ones age out. */
export function pickWarm(instances: PoolInstance[], policy: WarmPolicy, claimed: Set<string>, now: number): PoolInstance[] {
  return instances
    .filter((i) => i.state === 'stopped' && i.pool === policy.pool && i.config === policy.config && !i.spot && now < i.expiresAt && !claimed.has(i.id))
    .sort((a, b) => b.createdAt - a.createdAt);
}
