/**
 * Which jobs each recent claim request of a runner took, so a claim the runner gave up on can be
 * undone at once instead of after the lost-claim timeout. A runner aborts its claim long-poll
 * when it may no longer take jobs (its control channel dropped, it was disabled), and any claim
 * can fail on the way back; if the server answered it anyway, nobody read the answer. The runner
 * numbers its claims and lists the ones it never saw answered in its next heartbeat; a claim
 * listed before it is answered takes nothing. Kept in memory for `ttlMs` (the lost-claim
 * timeout, which still covers claims answered by another server).
 */
export interface TakenJob {
  id: number;
  attempt: number;
}

interface Entry {
  at: number;
  jobs: TakenJob[];
  abandoned: boolean;
}

export class ClaimLedger {
  private byRunner = new Map<string, Map<number, Entry>>();
  private lastSweep = 0;

  constructor(private ttlMs: number) {}

  /** Whether the runner already gave this claim up: it must take no jobs. */
  isAbandoned(runnerId: string, seq: number): boolean {
    return this.byRunner.get(runnerId)?.get(seq)?.abandoned ?? false;
  }

  /** Records the jobs a claim took; true when the runner abandoned it meanwhile (undo them). */
  record(runnerId: string, seq: number, jobs: TakenJob[], now: number): boolean {
    const claims = this.claimsOf(runnerId, now);
    const e = claims.get(seq);
    if (e?.abandoned) {
      e.jobs = jobs;
      return true;
    }
    claims.set(seq, { at: now, jobs, abandoned: false });
    return false;
  }

  /**
   * Marks claims abandoned; returns the jobs they took (each time it is asked: a heartbeat that
   * failed is sent again, and the caller requeues only jobs the runner still holds unreported).
   */
  abandon(runnerId: string, seqs: number[], now: number): TakenJob[] {
    if (seqs.length === 0) return [];
    const claims = this.claimsOf(runnerId, now);
    const taken: TakenJob[] = [];
    for (const seq of seqs) {
      const e = claims.get(seq);
      if (e) {
        e.abandoned = true;
        taken.push(...e.jobs);
      } else claims.set(seq, { at: now, jobs: [], abandoned: true });
    }
    return taken;
  }

  /** A runner that registered again or left: its numbering starts over. */
  forget(runnerId: string): void {
    this.byRunner.delete(runnerId);
  }

  private claimsOf(runnerId: string, now: number): Map<number, Entry> {
    if (now - this.lastSweep > this.ttlMs) this.sweep(now);
    let claims = this.byRunner.get(runnerId);
    if (!claims) this.byRunner.set(runnerId, (claims = new Map()));
    return claims;
  }

  /** Drops entries past the TTL, and runners with none left (runners that vanished). */
  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [runnerId, claims] of this.byRunner) {
      for (const [seq, e] of claims) if (now - e.at > this.ttlMs) claims.delete(seq);
      if (claims.size === 0) this.byRunner.delete(runnerId);
    }
  }
}
