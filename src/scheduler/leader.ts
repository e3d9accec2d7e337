import type { Db, Queryable } from '../store/db.js';
import { advisoryUnlock, tryAdvisoryLock } from '../store/advisory-lock.js';
import { pingStore } from '../store/queries/meta.js';
import type { Logger } from '../lib/logger.js';

// Arbitrary constant: the scheduler leader holds this session-level advisory lock.
const LEADER_LOCK = 7_302_114_002;

/**
 * One scheduler leader per database: the holder of a session advisory lock on a dedicated
 * connection. If the leader dies its connection closes, the lock is freed, and another server
 * takes over on its next tick. PGlite is single-process, so there the server is always leader.
 */
export class LeaderLock {
  private session: (Queryable & { release(): void }) | undefined;
  private leader = false;

  constructor(private db: Db, private log: Logger) {}

  get isLeader(): boolean {
    return this.leader;
  }

  /** Tries to become (or checks it still is) leader; returns the outcome. */
  async check(): Promise<boolean> {
    if (this.db.kind === 'pglite') return (this.leader = true);
    try {
      if (this.session && this.leader) {
        await pingStore(this.session);
        return true;
      }
      this.session ??= await this.db.openSession();
      const ok = await tryAdvisoryLock(this.session, LEADER_LOCK);
      if (ok && !this.leader) this.log.info('became scheduler leader');
      this.leader = ok;
    } catch (err) {
      if (this.leader) this.log.warn({ err }, 'lost scheduler leadership');
      this.leader = false;
      this.session?.release();
      this.session = undefined;
    }
    return this.leader;
  }

  async close(): Promise<void> {
    if (this.session) {
      if (this.leader) await advisoryUnlock(this.session, LEADER_LOCK).catch(() => {});
      this.session.release();
    }
    this.session = undefined;
    this.leader = false;
  }
}
