/** The side-by-side table and the JSON form of a report. */
import { formatTable } from '../lib/table.js';
import type { Report } from './compare.js';

export function fmtMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`;
  return `${Math.floor(ms / 3_600_000)}h${String(Math.floor((ms % 3_600_000) / 60_000)).padStart(2, '0')}m`;
}

/** One column per policy (and one for what the trace recorded), one row per figure. */
export function reportTable(r: Report): string {
  const cols = r.policies.map((p) => p.name);
  const rec = r.recorded;
  const headers = ['', ...cols, ...(rec ? ['recorded'] : [])];
  const row = (label: string, f: (p: Report['policies'][number]) => string, recorded = '') => [label, ...r.policies.map(f), ...(rec ? [recorded] : [])];
  const rows = [
    row('jobs', (p) => String(p.result.jobs), String(r.jobs)),
    row('wait p50', (p) => fmtMs(p.result.wait.p50), rec && fmtMs(rec.p50)),
    row('wait p95', (p) => fmtMs(p.result.wait.p95), rec && fmtMs(rec.p95)),
    row('wait p99', (p) => fmtMs(p.result.wait.p99), rec && fmtMs(rec.p99)),
    row('wait max', (p) => fmtMs(p.result.wait.max), rec && fmtMs(rec.max)),
    row(`over SLO (${fmtMs(r.sloMs)})`, (p) => `${p.result.overSlo} (${pct(p.result.overSlo, p.result.jobs)})`),
    row('runner-hours', (p) => p.result.runnerHours.toFixed(2)),
    row('idle runner-hours', (p) => `${p.result.idleRunnerHours.toFixed(2)} (${pct(p.result.idleRunnerHours, p.result.runnerHours)})`),
    row('cost', (p) => p.result.cost.toFixed(2)),
    row('peak runners', (p) => String(p.result.peakRunners)),
    row('runner starts', (p) => `${p.result.starts}${p.result.failedStarts ? ` (${p.result.failedStarts} failed)` : ''}`),
  ];
  if (r.policies.some((p) => p.result.unfinished)) rows.push(row('never ran', (p) => String(p.result.unfinished)));
  const lat = Object.entries(r.latency).map(([pool, l]) => `${pool}: ${l}`).join('; ');
  return `${formatTable(headers, rows)}\n\nstart latency: ${lat}\nseed ${r.seed}; ${r.jobs} jobs from ${new Date(r.from).toISOString()} to ${new Date(r.to).toISOString()}\n`;
}

const pct = (a: number, b: number) => (b > 0 ? `${((a / b) * 100).toFixed(1)}%` : '0%');

/** Everything but the time series (those are for the HTML report). */
export function reportJson(r: Report): string {
  return (
    JSON.stringify(
      {
        seed: r.seed,
        sloMs: r.sloMs,
        jobs: r.jobs,
        from: new Date(r.from).toISOString(),
        to: new Date(r.to).toISOString(),
        startLatency: r.latency,
        recorded: r.recorded ?? null,
        policies: r.policies.map((p) => {
          const { series: _series, start, end, ...figures } = p.result;
          return { name: p.name, ...figures, start: new Date(start).toISOString(), end: new Date(end).toISOString(), config: p.pools };
        }),
      },
      null,
      2,
    ) + '\n'
  );
}
