import { join } from 'node:path';
import { providerContract } from './helpers/provider-contract.js';
import { ProcessProvider } from '../src/providers/process/process-provider.js';
import { silentLogger } from '../src/lib/logger.js';

providerContract('process', {
  make: (t) => new ProcessProvider(join(t.dataDir, 'contract'), silentLogger, t.server.instanceId),
});
