import type { Config } from '../../config/schema.js';
import type { Logger } from '../../lib/logger.js';
import type { Provider } from '../provider.js';

/**
 * The ec2 provider this server runs: one, when a configured pool names provider ec2 or
 * RUNYARD_EC2=true asks for it (pools applied later through the API). Credentials come from the
 * SDK's default chain (environment, shared files, instance role).
 */
export async function ec2ProvidersFor(config: Pick<Config, 'pools'>, env: NodeJS.ProcessEnv, log: Logger, instanceId: string): Promise<Provider[]> {
  if (env.RUNYARD_EC2 !== 'true' && !config.pools.some((p) => p.provider === 'ec2')) return [];
  // the SDK is loaded only now: a server without EC2 starts without it
  const { Ec2Provider } = await import('./ec2-provider.js');
  const pollMs = env.RUNYARD_EC2_POLL_MS ? Number(env.RUNYARD_EC2_POLL_MS) : undefined;
  return [new Ec2Provider({ instanceId, log: log.child({ provider: 'ec2' }), pools: config.pools, pollMs: Number.isFinite(pollMs) ? pollMs : undefined })];
}
