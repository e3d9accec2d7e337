/*
 * The objects runners are made of: a Pod per runner running the agent, and a Secret with the
 * registration tokens of the runners launched together (owned by their Pods once they exist, so
 * it goes with the last of them). Pure functions from the launch specs.
 */
import type { V1Container, V1Pod, V1Secret } from '@kubernetes/client-node';
import type { LaunchSpec } from '../provider.js';
import { AGENT_DIR, AGENT_ENTRYPOINT, AGENT_RUNTIME_DIST_PREFIX, AGENT_RUNTIME_PATHS } from '../container/dynamic-images.js';
import { CONTAINER_STATE_DIR, CONTAINER_WORK_DIR, LABEL_BASE, LABEL_INSTANCE, LABEL_OWNER, LABEL_POOL, LABEL_RUNNER } from '../container/container-provider.js';
import { kubernetesFieldsOf } from './pool-config.js';
import { launchedAgentPassEnv } from '../../lib/base-env.js';

export const AGENT_CONTAINER = 'agent';
/** The agent's /livez and /readyz port inside the pod. */
export const HEALTH_PORT = 8081;
export const TOKEN_KEY = 'registration-token';
/** Where the init container puts the agent bundle for a dynamic image's main container. */
const BUNDLE_MOUNT = '/runyard-agent';

/** The pod name of a runner: deterministic, so a retried create finds it (409). */
export const podName = (runnerId: string) => `runyard-${runnerId}`;

/**
 * Where a runner's registration token is: the Secret of its launch (named after the launch's
 * first runner, so a retried launch finds it) under the runner's own key. A runner launched alone
 * has the Secret of its pod's name and the key `registration-token`.
 */
export function tokenRef(launch: readonly Pick<LaunchSpec, 'runnerId'>[], runnerId: string): { name: string; key: string } {
  return { name: podName(launch[0]!.runnerId), key: launch.length === 1 ? TOKEN_KEY : `${TOKEN_KEY}.${runnerId}` };
}

export function runnerLabels(spec: Pick<LaunchSpec, 'instanceId' | 'runnerId' | 'pool'>, owner: string): Record<string, string> {
  return { [LABEL_INSTANCE]: spec.instanceId, [LABEL_OWNER]: owner, [LABEL_POOL]: spec.pool.name, [LABEL_RUNNER]: spec.runnerId };
}

/** Kubernetes quantities from a class size: cpu 0.5 -> 500m, memoryMb 1024 -> 1024Mi. */
export function resourcesOf(classSize: LaunchSpec['classSize']) {
  if (!classSize) return undefined;
  const cpu = Number.isInteger(classSize.cpu) ? String(classSize.cpu) : `${Math.round(classSize.cpu * 1000)}m`;
  const q = { cpu, memory: `${classSize.memoryMb}Mi` };
  return { requests: q, limits: q };
}

export function buildPod(spec: LaunchSpec, opts: { owner: string; graceSeconds: number; token?: { name: string; key: string } }): V1Pod {
  const k = kubernetesFieldsOf(spec.pool);
  const name = podName(spec.runnerId);
  const template = k.podTemplate ?? {};
  const tspec = (template.spec ?? {}) as Record<string, any>;
  const labels = runnerLabels(spec, opts.owner);
  const env = [
    ...Object.entries(spec.pool.env).map(([n, value]) => ({ name: n, value })),
    { name: 'RUNYARD_SERVER', value: spec.serverUrl },
    { name: 'RUNYARD_REGISTRATION_TOKEN', valueFrom: { secretKeyRef: opts.token ?? tokenRef([spec], spec.runnerId) } },
    { name: 'RUNYARD_RUNNER_ID', value: spec.runnerId },
    { name: 'RUNYARD_RUNNER_NAME', value: spec.name },
    { name: 'RUNYARD_STATE_DIR', value: CONTAINER_STATE_DIR },
    { name: 'RUNYARD_WORK_DIR', value: CONTAINER_WORK_DIR },
    { name: 'RUNYARD_INSTANCE_ID', value: spec.instanceId },
    { name: 'RUNYARD_HEALTH_PORT', value: String(HEALTH_PORT) },
    // the pod's environment is the image's, the pool's and the downward API's: jobs get it all (base-env.ts)
    { name: 'RUNYARD_PASS_ENV', value: launchedAgentPassEnv('container').RUNYARD_PASS_ENV },
    // the pod's own address: probes reach it there, and nothing else on a shared network can collide
    { name: 'RUNYARD_HEALTH_HOST', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    // the downward API, for jobs that want to know where they run
    { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
  ];
  const mounts = [
    { name: 'runyard-state', mountPath: CONTAINER_STATE_DIR },
    { name: 'runyard-work', mountPath: CONTAINER_WORK_DIR },
    ...(spec.dynamic ? [{ name: 'runyard-agent', mountPath: AGENT_DIR }] : []),
  ];
  const fromTemplate = ((tspec.containers ?? []) as V1Container[]).find((c) => c.name === AGENT_CONTAINER) ?? ({} as Partial<V1Container>);
  const agent: V1Container = {
    ...fromTemplate,
    name: AGENT_CONTAINER,
    image: spec.dynamic?.image ?? spec.pool.image!,
    ...(spec.dynamic ? { command: AGENT_ENTRYPOINT } : {}),
    env: [...(fromTemplate.env ?? []).filter((e) => !env.some((o) => o.name === e.name)), ...env],
    volumeMounts: [...(fromTemplate.volumeMounts ?? []), ...mounts],
    readinessProbe: { httpGet: { path: '/readyz', port: HEALTH_PORT }, periodSeconds: 2, failureThreshold: 3, ...fromTemplate.readinessProbe },
    livenessProbe: { httpGet: { path: '/livez', port: HEALTH_PORT }, initialDelaySeconds: 10, periodSeconds: 10, failureThreshold: 3, ...fromTemplate.livenessProbe },
    ...(resourcesOf(spec.classSize) ? { resources: resourcesOf(spec.classSize) } : {}),
  };
  const initContainers: V1Container[] = [...(tspec.initContainers ?? [])];
  if (spec.dynamic) {
    // copies what the agent runs on with the bundle's own node (the runner image needs no cp)
    const [loader, , libs, node] = AGENT_ENTRYPOINT;
    const from = JSON.stringify(AGENT_DIR + '/');
    const to = JSON.stringify(BUNDLE_MOUNT + '/');
    const copy = [
      `const fs = require('fs');`,
      `const dist = fs.readdirSync(${from} + 'app/dist').filter((f) => f.startsWith(${JSON.stringify(AGENT_RUNTIME_DIST_PREFIX)})).map((f) => 'app/dist/' + f);`,
      `for (const p of [...${JSON.stringify(AGENT_RUNTIME_PATHS)}, ...dist]) fs.cpSync(${from} + p, ${to} + p, { recursive: true, preserveTimestamps: true });`,
    ].join(' ');
    initContainers.push({
      name: 'runyard-agent-bundle',
      image: spec.pool.image!,
      command: [loader!, '--library-path', libs!, node!, '-e', copy],
      volumeMounts: [{ name: 'runyard-agent', mountPath: BUNDLE_MOUNT }],
    });
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: k.namespace,
      labels: { ...template.metadata?.labels, ...labels, ...(spec.dynamic ? { [LABEL_BASE]: labelSafe(spec.dynamic.base) } : {}) },
      annotations: { ...template.metadata?.annotations, 'runyard.dev/runner-name': spec.name, ...(spec.dynamic ? { 'runyard.dev/base-image': spec.dynamic.base } : {}) },
    },
    spec: {
      ...tspec,
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: opts.graceSeconds,
      // the agent talks to runyard, not to the cluster
      automountServiceAccountToken: tspec.automountServiceAccountToken ?? false,
      ...(k.serviceAccountName ? { serviceAccountName: k.serviceAccountName } : {}),
      ...(k.nodeSelector || tspec.nodeSelector ? { nodeSelector: { ...tspec.nodeSelector, ...k.nodeSelector } } : {}),
      ...(k.tolerations || tspec.tolerations ? { tolerations: [...(tspec.tolerations ?? []), ...(k.tolerations ?? [])] } : {}),
      ...(k.imagePullSecrets || tspec.imagePullSecrets ? { imagePullSecrets: [...(tspec.imagePullSecrets ?? []), ...(k.imagePullSecrets ?? []).map((n) => ({ name: n }))] } : {}),
      ...(initContainers.length ? { initContainers } : {}),
      containers: [agent, ...((tspec.containers ?? []) as V1Container[]).filter((c) => c.name !== AGENT_CONTAINER)],
      volumes: [
        ...(tspec.volumes ?? []),
        { name: 'runyard-state', emptyDir: {} },
        { name: 'runyard-work', emptyDir: {} },
        ...(spec.dynamic ? [{ name: 'runyard-agent', emptyDir: {} }] : []),
      ],
    },
  };
}

/**
 * The registration tokens of runners launched together, in one Secret created before their Pods
 * (a Pod never waits for its token), then handed to them (secretOwners): one call for the launch
 * instead of one per runner, and the garbage collector deletes it with the last of those Pods.
 */
export function buildSecret(launch: readonly LaunchSpec[], owner: string): V1Secret {
  const first = launch[0]!;
  const k = kubernetesFieldsOf(first.pool);
  const data: Record<string, string> = {};
  for (const s of launch) data[tokenRef(launch, s.runnerId).key] = Buffer.from(s.registrationToken).toString('base64');
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    // the runner label names the launch's first runner; instance, owner and pool are all of theirs
    metadata: { name: tokenRef(launch, first.runnerId).name, namespace: k.namespace, labels: runnerLabels(first, owner) },
    data,
  };
}

/** The launch Secret's owners: its Pods. An object has at most one controller: one shared by several Pods has none. */
export function secretOwners(pods: readonly { runnerId: string; uid: string }[]) {
  return pods.map((p) => ({ apiVersion: 'v1', kind: 'Pod', name: podName(p.runnerId), uid: p.uid, controller: pods.length === 1, blockOwnerDeletion: true }));
}

/** An image reference as a label value (no '/' or ':'), truncated to 63 characters. */
function labelSafe(s: string) {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 63).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
}
