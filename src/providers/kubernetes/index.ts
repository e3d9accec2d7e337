import type { Config } from '../../config/schema.js';
import type { Logger } from '../../lib/logger.js';
import type { Provider } from '../provider.js';
import type { Connection } from './kube-client.js';
import { kubernetesFieldsOf } from './pool-config.js';

/**
 * The kubernetes provider this server runs, from its pools (none until a pool names provider
 * kubernetes). One provider, named `kubernetes`, holds a client per distinct cluster connection
 * (kubeconfig and context; the first pool's qps and burst set its rate limit) and one watch per
 * connection and namespace. client-node (hundreds of modules, half a second of CPU) is loaded
 * only then: a server without kubernetes pools starts without it.
 */
export async function kubernetesProvidersFor(config: Pick<Config, 'pools'> & Partial<Pick<Config, 'scheduler'>>, env: NodeJS.ProcessEnv, log: Logger, instanceId: string): Promise<Provider[]> {
  const pools = config.pools.filter((p) => p.provider === 'kubernetes');
  if (!pools.length) return [];
  const [{ connectionKey }, { KubernetesProvider }] = await Promise.all([import('./kube-client.js'), import('./kubernetes-provider.js')]);
  const targets = new Map<string, { connection: Connection; namespace: string }>();
  for (const p of pools) {
    const k = kubernetesFieldsOf(p);
    const key = `${connectionKey(k)}|${k.namespace}`;
    if (!targets.has(key)) targets.set(key, { connection: { kubeconfig: k.kubeconfig, context: k.context, qps: k.qps, burst: k.burst }, namespace: k.namespace });
  }
  return [new KubernetesProvider({ instanceId, log: log.child({ provider: 'kubernetes' }), targets: [...targets.values()], stopGraceMs: config.scheduler?.stopGrace ?? 30_000, env })];
}
