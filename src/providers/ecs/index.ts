import type { Config } from '../../config/schema.js';
import type { Logger } from '../../lib/logger.js';
import type { Provider } from '../provider.js';

/**
 * The ecs provider this server runs: one, named `ecs`, when a pool names provider ecs. It lists
 * the clusters of those pools after a restart. RUNYARD_ECS_POLL sets how often watched tasks are
 * described (milliseconds, default 5000).
 */
export async function ecsProvidersFor(config: Pick<Config, 'pools'>, env: NodeJS.ProcessEnv, log: Logger, instanceId: string): Promise<Provider[]> {
  const pools = config.pools.filter((p) => p.provider === 'ecs' && p.ecs).map((p) => ({ name: p.name, fields: p.ecs! }));
  if (!pools.length) return [];
  // the SDK is loaded only now: a server without ECS pools starts without it
  const { EcsProvider } = await import('./ecs-provider.js');
  const pollMs = Number(env.RUNYARD_ECS_POLL) || undefined;
  return [new EcsProvider({ instanceId, log: log.child({ provider: 'ecs' }), pools, pollMs })];
}
