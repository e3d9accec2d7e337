import type { Config } from '../../config/schema.js';
import type { Logger } from '../../lib/logger.js';
import type { Provider } from '../provider.js';

/** The kubernetes providers this server runs, from its pools (none until a pool names provider kubernetes). */
export function kubernetesProvidersFor(_config: Pick<Config, 'pools'>, _env: NodeJS.ProcessEnv, _log: Logger, _instanceId: string): Provider[] {
  return [];
}
