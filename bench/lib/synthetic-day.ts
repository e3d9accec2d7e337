/** The synthetic day of jobs the simulator section replays. */
import { Prng } from '../../src/sim/prng.js';
import type { TraceJob } from '../../src/sim/trace.js';

const DAY = 86_400_000;

/** n arrivals over a day, rate ∝ 0.15 + sin² shaped around 15:00 UTC; durations 1–12 min. */
export function syntheticDay(n: number, start: number, seed: number): TraceJob[] {
  const rng = new Prng(seed);
  const weight = (t: number) => 0.15 + Math.max(0, Math.sin((Math.PI * (t / DAY - 0.25)) / 0.75)) ** 2;
  const jobs: TraceJob[] = [];
  const labels: string[] = [];
  while (jobs.length < n) {
    const t = rng.next() * DAY;
    if (rng.next() * 1.15 > weight(t)) continue; // rejection sampling of the day curve
    jobs.push({ arrival: start + Math.floor(t), pool: 'fleet', labels, duration: 60_000 + Math.floor(rng.next() * 11 * 60_000), outcome: 'succeeded' });
  }
  return jobs.sort((a, b) => a.arrival - b.arrival);
}

