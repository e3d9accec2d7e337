import type { Config, ClassSize } from '../config/schema.js';
import type { Db } from '../store/db.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { ControlHub } from './control-hub.js';
import type { HeartbeatBuffer } from './heartbeat-buffer.js';
import type { Metrics } from './metrics.js';
import type { RefusalAudit } from './refusal-audit.js';
import type { Bus } from './bus.js';
import type { Provider } from '../providers/provider.js';
import type { ClaimLedger } from './claim-ledger.js';
import type { JobCompleter } from './completer.js';

/** What the use cases need from the server: its store, services and settings; built once in server.ts. */
export interface AppContext {
  db: Db;
  config: Config;
  clock: Clock;
  log: Logger;
  hub: ControlHub;
  heartbeats: HeartbeatBuffer;
  /** runners' claim requests by their number, to undo claims they gave up on */
  claims: ClaimLedger;
  /** writes runners' results in batches */
  completer: JobCompleter;
  metrics: Metrics;
  /** the audit trail of refused calls, aggregated */
  audit: RefusalAudit;
  /** at-rest key for job secrets */
  secretKey: Buffer;
  classSizes: Record<string, ClassSize>;
  /** in-process notifications (src/app/bus.ts) */
  bus: Bus;
  version: string;
  /** the server's providers by name (filled at start); pools and jobs for others are refused */
  providers?: ReadonlyMap<string, Provider>;
  /** URLs of the live control planes on this database, this one first (runners fail over to them). */
  servers?: () => string[];
}
