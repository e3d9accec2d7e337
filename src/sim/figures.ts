/** The figures one simulated (or recorded) policy is judged by. */
export interface PolicyFigures {
  jobs: number;
  /** queue wait in ms: arrival to claim */
  wait: { p50: number; p95: number; p99: number; max: number; mean: number };
  /** jobs that waited longer than the SLO */
  overSlo: number;
  runnerHours: number;
  /** hours runners sat registered with no job: the waste */
  idleRunnerHours: number;
  cost: number;
  peakRunners: number;
  starts: number;
  failedStarts: number;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function waitFigures(waits: ArrayLike<number>): PolicyFigures['wait'] {
  const sorted = Float64Array.from(waits).sort();
  let total = 0;
  for (let i = 0; i < sorted.length; i++) total += sorted[i]!;
  return {
    p50: percentile(sorted, 0.5),
    p95: percentile(sorted, 0.95),
    p99: percentile(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1]! : 0,
    mean: sorted.length ? Math.round(total / sorted.length) : 0,
  };
}

const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;

export function summarize(
  waits: ArrayLike<number>,
  sloMs: number,
  acc: { runnerMs: number; idleMs: number; cost: number; peak: number; starts: number; failedStarts: number },
): PolicyFigures {
  let over = 0;
  for (let i = 0; i < waits.length; i++) if (waits[i]! > sloMs) over++;
  return {
    jobs: waits.length,
    wait: waitFigures(waits),
    overSlo: over,
    runnerHours: round(acc.runnerMs / 3_600_000, 3),
    idleRunnerHours: round(acc.idleMs / 3_600_000, 3),
    cost: round(acc.cost, 4),
    peakRunners: acc.peak,
    starts: acc.starts,
    failedStarts: acc.failedStarts,
  };
}
