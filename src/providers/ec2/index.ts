import type { Config } from '../../config/schema.js';
import type { Logger } from '../../lib/logger.js';
import type { Provider } from '../provider.js';
import { Ec2Provider } from './ec2-provider.js';

/**
 * The ec2 provider this server runs: one, when a configured pool names provider ec2 or
 * RUNYARD_EC2=true asks for it (pools applied later through the API). Credentials come from the
 * SDK's default chain (environment, shared files, instance role).
 */
export function ec2ProvidersFor(config: Pick<Config, 'pools'>, env: NodeJS.ProcessEnv, log: Logger, instanceId: string): Provider[] {
  if (env.RUNYARD_EC2 !== 'true' && !config.pools.some((p) => p.provider === 'ec2')) return [];
  const pollMs = env.RUNYARD_EC2_POLL_MS ? Number(env.RUNYARD_EC2_POLL_MS) : undefined;
  return [new Ec2Provider({ instanceId, log: log.child({ provider: 'ec2' }), pools: config.pools, pollMs: Number.isFinite(pollMs) ? pollMs : undefined })];
}
