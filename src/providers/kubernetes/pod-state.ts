/*
 * What a runner pod's phase, conditions and container statuses mean for the runner:
 *
 *   Pending ──scheduled, containers start──▶ Running ──agent exits──▶ Succeeded | Failed
 *      │                                         │
 *      ├─ image / config error ─▶ stuck          └─ deletionTimestamp (drain, eviction) ─▶ gone
 *      └─ Unschedulable past startTimeout ─▶ stuck
 *
 * Stuck and ended pods are deleted by the provider with the reason reported; nothing stays
 * Pending unseen.
 */
import type { V1Pod } from '@kubernetes/client-node';

/** Container waiting reasons that do not clear up by themselves. */
const STUCK_REASONS = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull', 'CreateContainerConfigError', 'CreateContainerError', 'CrashLoopBackOff', 'RunContainerError']);
/** Reasons a kubelet reports briefly while things fall into place (the Secret created just after its Pod). */
const TRANSIENT_FIRST = new Set(['CreateContainerConfigError']);

export type PodVerdict =
  | { kind: 'starting' }
  | { kind: 'running'; ready: boolean }
  | { kind: 'ended'; detail: string }
  | { kind: 'stuck'; reason: string; detail: string }
  | { kind: 'terminating'; detail: string };

/** When an unschedulable pod counts as stuck: its start timeout less a margin (a quarter, at most 5 s). */
export const unschedulableAfter = (startTimeoutMs: number) => startTimeoutMs - Math.min(5_000, startTimeoutMs / 4);

const time = (t: unknown) => (t ? new Date(t as string).getTime() : NaN);

/**
 * `startTimeoutMs`: how long a pod may stay unschedulable; `settleMs`: how long a transient
 * waiting reason may last before it counts as stuck.
 */
export function judgePod(pod: V1Pod, now: number, opts: { startTimeoutMs: number; settleMs: number }): PodVerdict {
  const st = pod.status ?? {};
  const name = pod.metadata?.name;
  if (pod.metadata?.deletionTimestamp) {
    const disruption = st.conditions?.find((c) => c.type === 'DisruptionTarget' && c.status === 'True');
    return { kind: 'terminating', detail: disruption ? `pod ${name} was evicted (${disruption.reason}${disruption.message ? `: ${disruption.message}` : ''})` : `pod ${name} is being deleted` };
  }
  if (st.phase === 'Succeeded' || st.phase === 'Failed') {
    const agent = st.containerStatuses?.find((c) => c.state?.terminated);
    const t = agent?.state?.terminated;
    const why = st.reason ? ` (${st.reason}${st.message ? `: ${st.message}` : ''})` : '';
    return { kind: 'ended', detail: `pod ${name} ${st.phase.toLowerCase()}${t ? `: container ${agent!.name} exited with code ${t.exitCode}${t.reason && t.reason !== 'Completed' && t.reason !== 'Error' ? ` (${t.reason})` : ''}` : ''}${why}` };
  }
  const created = time(pod.metadata?.creationTimestamp);
  for (const c of [...(st.initContainerStatuses ?? []), ...(st.containerStatuses ?? [])]) {
    const w = c.state?.waiting;
    if (w?.reason && STUCK_REASONS.has(w.reason)) {
      if (TRANSIENT_FIRST.has(w.reason) && now - created < opts.settleMs) continue;
      return { kind: 'stuck', reason: w.reason, detail: `pod ${name} is stuck: ${w.reason}${w.message ? `: ${w.message}` : ''}` };
    }
  }
  const scheduled = st.conditions?.find((c) => c.type === 'PodScheduled');
  // judged a little before the start timeout runs out, so the start fails with this reason and not a bare timeout
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable' && now - created >= unschedulableAfter(opts.startTimeoutMs))
    return { kind: 'stuck', reason: 'Unschedulable', detail: `pod ${name} is stuck: Unschedulable for ${Math.round((now - created) / 1000)}s${scheduled.message ? `: ${scheduled.message}` : ''}` };
  if (st.phase === 'Running') return { kind: 'running', ready: !!st.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') };
  return { kind: 'starting' };
}
