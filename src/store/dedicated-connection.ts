/*
 * A connection of its own for one busy service (the scheduler's gather, the heartbeat buffer), so
 * its statements never queue behind the requests waiting for the pool's connections. Statements
 * run one at a time, in order; a connection found broken is dropped and the next statement opens
 * another. On PGlite (one connection for all) it is the store itself.
 */
import type { Db, Queryable, Statement } from './db.js';
import { StoreUnavailableError } from './store-errors.js';
import { Serial } from '../lib/serial.js';

export class DedicatedConnection implements Queryable {
  private session: (Queryable & { release(): void }) | undefined;
  private serial = new Serial();

  constructor(private db: Db) {}

  query<T = Record<string, any>>(sql: Statement, params?: unknown[]): Promise<T[]> {
    return this.serial.run(() => this.run<T>(sql, params));
  }

  private async run<T>(sql: Statement, params?: unknown[]): Promise<T[]> {
    this.session ??= await this.db.openSession();
    try {
      return await this.session.query<T>(sql, params);
    } catch (err) {
      if (err instanceof StoreUnavailableError) this.close();
      throw err;
    }
  }

  /** Gives the connection back (a later statement opens another). */
  close(): void {
    this.session?.release();
    this.session = undefined;
  }
}
