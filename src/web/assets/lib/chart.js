// @ts-check
/** A stacked bar chart of jobs finished per minute (SVG, no library). */
import { h, svg } from './dom.js';

const SERIES = /** @type {const} */ (['succeeded', 'failed', 'timed_out', 'cancelled']);
const BAR = 10;
const HEIGHT = 120;

/**
 * @param {{at: string, succeeded: number, failed: number, cancelled: number, timed_out: number}[]} buckets
 */
export function throughputChart(buckets) {
  const totals = buckets.map((b) => SERIES.reduce((s, k) => s + b[k], 0));
  const sum = totals.reduce((a, b) => a + b, 0);
  const peak = Math.max(0, ...totals);
  const top = niceCeil(Math.max(peak, 4));
  const width = buckets.length * BAR;
  const scale = (/** @type {number} */ n) => (n / top) * HEIGHT;
  const time = (/** @type {string} */ iso) => new Date(iso).toTimeString().slice(0, 5);

  const grid = [0.25, 0.5, 0.75, 1].map((f) => svg('line', { class: 'chart-grid', x1: 0, x2: width, y1: HEIGHT - f * HEIGHT, y2: HEIGHT - f * HEIGHT }));
  const bars = buckets.map((b, i) => {
    let y = HEIGHT;
    const parts = SERIES.filter((k) => b[k] > 0).map((k) => {
      const hgt = Math.max(1.5, scale(b[k]));
      y -= hgt;
      return svg('rect', { class: `bar bar-${k}`, x: i * BAR + 1, y, width: BAR - 2, height: hgt, rx: 1 });
    });
    const detail = SERIES.filter((k) => b[k] > 0).map((k) => `${b[k]} ${k.replace('_', ' ')}`).join(', ') || 'none finished';
    // A full-height transparent hit area so the tooltip shows anywhere in the column.
    return svg('g', null, svg('title', null, `${time(b.at)}: ${detail}`), svg('rect', { class: 'bar-hit', x: i * BAR, y: 0, width: BAR, height: HEIGHT }), ...parts);
  });
  const chart = svg(
    'svg',
    {
      class: 'chart-svg',
      viewBox: `0 0 ${width} ${HEIGHT}`,
      preserveAspectRatio: 'none',
      role: 'img',
      'aria-label': `Jobs finished per minute over the last hour: ${sum} in total, at most ${peak} in one minute.`,
    },
    ...grid,
    ...bars,
  );
  return h(
    'figure',
    { class: 'chart' },
    h(
      'div',
      { class: 'chart-body' },
      h('div', { class: 'chart-y', 'aria-hidden': 'true' }, h('span', null, String(top)), h('span', null, String(top / 2)), h('span', null, '0')),
      h('div', { class: 'chart-plot' }, chart),
    ),
    h(
      'div',
      { class: 'chart-x', 'aria-hidden': 'true' },
      h('span', null, buckets[0] ? time(buckets[0].at) : ''),
      h('span', null, buckets[Math.floor(buckets.length / 2)] ? time(buckets[Math.floor(buckets.length / 2)].at) : ''),
      h('span', null, 'now'),
    ),
    h(
      'figcaption',
      { class: 'chart-legend' },
      SERIES.map((k) => h('span', { class: 'legend-item' }, h('span', { class: `swatch bar-${k}` }), k.replace('_', ' '))),
    ),
  );
}

/** 4 → 4, 7 → 8, 13 → 20, 130 → 200 @param {number} n */
function niceCeil(n) {
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 4, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}
