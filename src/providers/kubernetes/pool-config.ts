import { z } from 'zod';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dnsLabel = (what: string) => z.string().max(63).regex(DNS_LABEL, `must be a ${what}: lowercase letters, digits and '-', starting and ending with a letter or digit`);
/** A label key: optional DNS prefix and '/', then a name of at most 63 characters. */
const labelKey = z.string().regex(/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/, 'must be a Kubernetes label key');
const labelValue = z.string().regex(/^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/, 'must be a Kubernetes label value (at most 63 characters)');

const toleration = z.strictObject({
  key: labelKey.optional(),
  operator: z.enum(['Exists', 'Equal']).optional(),
  value: z.string().max(63).optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
  tolerationSeconds: z.number().int().min(0).optional(),
});

/**
 * A partial Pod, merged under runyard's own fields (as actions-runner-controller's template):
 * its labels and annotations, and a Pod spec whose `agent` container is merged under the agent's
 * and whose other containers, volumes and fields are kept. The API server validates the whole;
 * a 422 names the field.
 */
const podTemplate = z.strictObject({
  metadata: z.strictObject({ labels: z.record(labelKey, labelValue).optional(), annotations: z.record(z.string().max(253), z.string()).optional() }).optional(),
  spec: z
    .looseObject({
      containers: z.array(z.looseObject({ name: dnsLabel('container name') })).optional(),
      initContainers: z.array(z.looseObject({ name: dnsLabel('container name') })).optional(),
      volumes: z.array(z.looseObject({ name: dnsLabel('volume name') })).optional(),
    })
    .optional(),
});

/**
 * The `kubernetes:` block of a pool with `provider: kubernetes`: what only this provider needs.
 * Validated at config load and pool apply; covered by the pool's config hash.
 */
export const kubernetesPoolFields = z.strictObject({
  namespace: dnsLabel('namespace name').default('default'),
  serviceAccountName: z.string().max(253).regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a service account name').optional(),
  nodeSelector: z.record(labelKey, labelValue).optional(),
  tolerations: z.array(toleration).max(50).optional(),
  imagePullSecrets: z.array(dnsLabel('secret name')).max(20).optional(),
  podTemplate: podTemplate.optional(),
  /** A kubeconfig file; omitted: in-cluster service account, else $KUBECONFIG / ~/.kube/config. */
  kubeconfig: z.string().min(1).max(4096).optional(),
  /** A context of that kubeconfig (default: its current context). */
  context: z.string().min(1).max(253).optional(),
  /** Client-side rate limit for this cluster connection (requests per second, and the burst above it). */
  qps: z.number().positive().max(10_000).default(20),
  burst: z.number().int().positive().max(10_000).default(40),
});
export type KubernetesPoolFields = z.output<typeof kubernetesPoolFields>;

/** The pool's block with its defaults, for pools that have none. */
export function kubernetesFieldsOf(pool: { kubernetes?: KubernetesPoolFields }): KubernetesPoolFields {
  return pool.kubernetes ?? kubernetesPoolFields.parse({});
}
