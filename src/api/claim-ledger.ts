/**
 * Which jobs each recent claim request of a runner took, so a claim the runner gave up on can be
 * undone at once instead of after the lost-claim timeout. A runner aborts its claim long-poll
 * when it may no longer take jobs (its control channel dropped, it was disabled); if the network
 * hid that abort, this server may still answer the claim, into a connection nobody reads. The
 * runner numbers its claims and reports the ones it abandoned with its next heartbeat; a claim
 * reported abandoned before it is answered takes nothing. Kept in memory for `ttlMs` (the
 * lost-claim timeout, which still covers claims answered by another server).
 */
interface Entry {
  at: number;
  jobIds: number[];
  abandoned: boolean;
}

export class ClaimLedger {
  private byRunner = new Map<string, Map<number, Entry>>();

  constructor(private ttlMs: number) {}

  /** Whether the runner already gave this claim up: it must take no jobs. */
  isAbandoned(runnerId: string, seq: number): boolean {
    return this.byRunner.get(runnerId)?.get(seq)?.abandoned ?? false;
  }

  /** Records the jobs a claim took; true when the runner abandoned it meanwhile (undo them). */
  record(runnerId: string, seq: number, jobIds: number[], now: number): boolean {
    const claims = this.claimsOf(runnerId, now);
    const e = claims.get(seq);
    if (e?.abandoned) return true;
    claims.set(seq, { at: now, jobIds, abandoned: false });
    return false;
  }

  /** Marks claims abandoned; returns the jobs they had taken. */
  abandon(runnerId: string, seqs: number[], now: number): number[] {
    if (seqs.length === 0) return [];
    const claims = this.claimsOf(runnerId, now);
    const taken: number[] = [];
    for (const seq of seqs) {
      const e = claims.get(seq);
      if (e) taken.push(...e.jobIds);
      claims.set(seq, { at: now, jobIds: [], abandoned: true });
    }
    return taken;
  }

  forget(runnerId: string): void {
    this.byRunner.delete(runnerId);
  }

  private claimsOf(runnerId: string, now: number): Map<number, Entry> {
    let claims = this.byRunner.get(runnerId);
    if (!claims) this.byRunner.set(runnerId, (claims = new Map()));
    for (const [seq, e] of claims) if (now - e.at > this.ttlMs) claims.delete(seq);
    return claims;
  }
}
