/*
 * What a section reports, and the harness every section file runs under: bench/run.ts starts
 * each section in its own process (`node --import tsx bench/sections/<name>.ts <out.json>`), so
 * memory figures start from a fresh heap and one failing section does not take the others down.
 */
import { writeFileSync } from 'node:fs';

export interface Row {
  /** what was measured */
  metric: string;
  /** the figure (median of runs when runs has several values) */
  value: number | null;
  unit: string;
  /** e.g. ">= 5000" or "<= 25"; empty when the figure is informational */
  target?: string;
  /** whether the target is met; undefined for informational rows */
  met?: boolean;
  /** every run's value when the figure is a median */
  runs?: number[];
  note?: string;
  /** also list this informational row in the summary at the top of BENCHMARKS.md */
  key?: boolean;
}

export interface SectionResult {
  id: string;
  title: string;
  rows: Row[];
  /** method, configuration, caveats: one line each */
  notes: string[];
  /** free-form breakdowns (timings per stage, statements per job, ...) shown under the table */
  details?: { title: string; headers: string[]; rows: (string | number)[][] }[];
  error?: string;
  startedAt?: string;
  durationS?: number;
  quick?: boolean;
  /** filled in by run.ts: CPU use during the section by this bench and by everything else */
  load?: { load1Before: number; load1After: number; machineBusyPct: number; benchPct: number; otherPct: number };
}

export interface SectionContext {
  quick: boolean;
  /** number of repeated runs for short measurements */
  runs: number;
  log: (msg: string) => void;
}

export const targetAtLeast = (value: number | null, min: number) => (value === null || Number.isNaN(value) ? false : value >= min);
export const targetAtMost = (value: number | null, max: number) => (value === null || Number.isNaN(value) ? false : value <= max);

/** Entry point of a section file: runs `fn` and writes its result where run.ts asked. */
export async function runSection(id: string, title: string, fn: (ctx: SectionContext) => Promise<Omit<SectionResult, 'id' | 'title'>>): Promise<void> {
  const out = process.argv[2];
  const quick = process.env.BENCH_QUICK === '1';
  const runs = Number(process.env.BENCH_RUNS ?? (quick ? 3 : 3));
  const started = Date.now();
  const log = (msg: string) => process.stderr.write(`  [${id} ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
  let result: SectionResult;
  try {
    const r = await fn({ quick, runs, log });
    result = { id, title, ...r };
  } catch (err) {
    log(`FAILED: ${(err as Error).stack ?? err}`);
    result = { id, title, rows: [], notes: [], error: String((err as Error).stack ?? err) };
  }
  result.startedAt = new Date(started).toISOString();
  result.durationS = Math.round((Date.now() - started) / 1000);
  result.quick = quick;
  if (out) writeFileSync(out, JSON.stringify(result, null, 2));
  else console.log(JSON.stringify(result, null, 2));
  // Timers of a closed server or a stray handle must not keep the section alive.
  process.exit(result.error ? 1 : 0);
}
