/*
 * The HTML report: one self-contained file (inline CSS and SVG, no script, no CDN) with the
 * side-by-side figures and, per policy, queue depth and runners by state over time.
 */
import type { Report } from './compare.js';
import type { SimSeries } from './simulation.js';
import { fmtMs } from './report-text.js';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const W = 760;
const H = 200;
const PAD = { l: 44, r: 12, t: 22, b: 26 };
const STATES = [
  { key: 'busy', label: 'busy', color: '#2f6fdf' },
  { key: 'idle', label: 'idle', color: '#9cc3ff' },
  { key: 'starting', label: 'starting', color: '#f0a030' },
  { key: 'draining', label: 'draining', color: '#b0b0b0' },
] as const;

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v)!;
}

function hhmm(t: number, span: number): string {
  const iso = new Date(t).toISOString();
  return span > 2 * 86_400_000 ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 16);
}

function axes(t: number[], max: number, title: string): string {
  const x0 = PAD.l;
  const y0 = H - PAD.b;
  const span = t[t.length - 1]! - t[0]!;
  const ticks: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const y = y0 - ((H - PAD.t - PAD.b) * i) / 4;
    ticks.push(`<line x1="${x0}" x2="${W - PAD.r}" y1="${y}" y2="${y}" stroke="#e4e4e4"/><text x="${x0 - 6}" y="${y + 4}" text-anchor="end">${+((max * i) / 4).toFixed(1)}</text>`);
  }
  for (let i = 0; i <= 6; i++) {
    const x = x0 + ((W - PAD.l - PAD.r) * i) / 6;
    ticks.push(`<text x="${x}" y="${H - 8}" text-anchor="middle">${hhmm(t[0]! + (span * i) / 6, span)}</text>`);
  }
  return `<text x="${x0}" y="12" class="title">${esc(title)}</text>${ticks.join('')}`;
}

function scale(t: number[], max: number) {
  const t0 = t[0]!;
  const span = Math.max(1, t[t.length - 1]! - t0);
  return {
    x: (v: number) => +(PAD.l + ((v - t0) / span) * (W - PAD.l - PAD.r)).toFixed(1),
    y: (v: number) => +(H - PAD.b - (v / max) * (H - PAD.t - PAD.b)).toFixed(1),
  };
}

export function queueChart(s: SimSeries, name: string): string {
  const max = niceMax(Math.max(0, ...s.queued));
  const { x, y } = scale(s.t, max);
  const pts = s.t.map((t, i) => `${x(t)},${y(s.queued[i]!)}`).join(' ');
  return `<svg class="chart" data-chart="queue" viewBox="0 0 ${W} ${H}" role="img" aria-label="queue depth over time, ${esc(name)}">${axes(s.t, max, 'queued jobs')}<polyline points="${pts}" fill="none" stroke="#c0392b" stroke-width="1.5"/></svg>`;
}

export function runnersChart(s: SimSeries, name: string): string {
  const totals = s.t.map((_, i) => STATES.reduce((n, st) => n + s[st.key][i]!, 0));
  const max = niceMax(Math.max(0, ...totals));
  const { x, y } = scale(s.t, max);
  const base = s.t.map(() => 0);
  const areas = STATES.map((st) => {
    const lower = [...base];
    s.t.forEach((_, i) => (base[i] = base[i]! + s[st.key][i]!));
    const top = s.t.map((t, i) => `${x(t)},${y(base[i]!)}`);
    const bottom = s.t.map((t, i) => `${x(t)},${y(lower[i]!)}`).reverse();
    return `<polygon data-state="${st.key}" points="${[...top, ...bottom].join(' ')}" fill="${st.color}"/>`;
  });
  const legend = STATES.map((st, i) => `<rect x="${W - PAD.r - 300 + i * 75}" y="3" width="10" height="10" fill="${st.color}"/><text x="${W - PAD.r - 286 + i * 75}" y="12">${st.label}</text>`).join('');
  return `<svg class="chart" data-chart="runners" viewBox="0 0 ${W} ${H}" role="img" aria-label="runners by state over time, ${esc(name)}">${axes(s.t, max, 'runners by state')}${areas.join('')}${legend}</svg>`;
}

export function reportHtml(r: Report, table: string): string {
  const sections = r.policies
    .map(
      (p) => `<section class="policy" data-policy="${esc(p.name)}">
<h2>${esc(p.name)}</h2>
<p class="sum">wait p95 ${fmtMs(p.result.wait.p95)} · ${p.result.overSlo} jobs over SLO · ${p.result.runnerHours.toFixed(1)} runner-hours (${p.result.idleRunnerHours.toFixed(1)} idle) · cost ${p.result.cost.toFixed(2)} · peak ${p.result.peakRunners} runners</p>
${queueChart(p.result.series, p.name)}
${runnersChart(p.result.series, p.name)}
</section>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>runyard simulate: ${r.policies.length} ${r.policies.length === 1 ? 'policy' : 'policies'}, ${r.jobs} jobs</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:820px}
h1{font-size:20px}h2{font-size:16px;margin:24px 0 4px}
pre{background:#f6f6f6;padding:12px;overflow-x:auto;font-size:12px}
.chart{width:100%;height:auto;display:block;margin:6px 0}
.chart text{font-size:10px;fill:#555}.chart .title{font-size:11px;fill:#222;font-weight:600}
.sum{color:#444;margin:0}
</style></head>
<body>
<h1>runyard simulate</h1>
<p>${r.jobs} jobs from ${new Date(r.from).toISOString()} to ${new Date(r.to).toISOString()}, seed ${r.seed}, wait SLO ${fmtMs(r.sloMs)}. Times are UTC.</p>
<pre id="figures">${esc(table)}</pre>
${sections}
</body></html>
`;
}
