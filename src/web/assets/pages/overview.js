// @ts-check
/** Overview: queue depth and wait per pool, runners by state, jobs per minute over the last hour. */
import { h, swap, badge, empty, throttle } from '../lib/dom.js';
import { duration, count } from '../lib/format.js';
import { throughputChart } from '../lib/chart.js';
import { pageHeader, loader, staleNotice } from '../lib/page.js';

const RUNNER_STATES = ['starting', 'idle', 'busy', 'draining', 'disabled', 'offline'];

/** @param {HTMLElement} root @param {import('../app.js').Route} _route @param {import('../app.js').App} app */
export function mount(root, _route, app) {
  app.setTitle('Overview');
  const body = h('div', { class: 'page-body', 'aria-busy': 'true' }, h('p', { class: 'loading' }, 'Loading…'));
  const notice = staleNotice();
  root.append(h('div', { class: 'page' }, pageHeader('Overview', 'The fleet at a glance, updated live.'), notice, body));

  const l = loader({ body, notice, what: 'the overview', fetch: (signal) => app.api.get('stats', { signal }), render });
  const refresh = throttle(() => void l.load(), 1000);
  void l.load();
  // The hour window moves on by itself: refresh it now and then even when nothing happens.
  const timer = setInterval(() => void l.load(), 30_000);

  /** @param {any} s */
  function render(s) {
    body.removeAttribute('aria-busy');
    const liveRunners = Object.entries(s.runners).reduce((n, [, v]) => n + Number(v), 0);
    const oldest = Math.max(0, ...s.pools.map((/** @type {any} */ p) => p.oldestWaitMs ?? 0));
    const tiles = h(
      'section',
      { class: 'tiles', 'aria-label': 'Totals' },
      tile('Queued', count(s.jobs.queued), s.jobs.queued ? `oldest waiting ${duration(oldest)}` : 'nothing waiting', 'tile-queued'),
      tile('Running', count(s.jobs.running + s.jobs.claimed), s.jobs.claimed ? `${s.jobs.claimed} being picked up` : 'jobs on runners now', 'tile-running'),
      tile('Runners', count(liveRunners), liveRunners ? `${s.runners.busy ?? 0} busy · ${s.runners.idle ?? 0} idle` : 'scaled to zero', 'tile-runners'),
      tile('Jobs finished, last minute', count(s.throughput.lastMinute), `${count(s.throughput.lastHour)} in the last hour · avg ${s.throughput.perMinute}/min`, 'tile-rate'),
    );
    const chart = h(
      'section',
      { class: 'card', 'aria-labelledby': 'chart-title' },
      h('div', { class: 'card-header' }, h('h2', { id: 'chart-title', class: 'card-title' }, 'Jobs finished per minute'), h('span', { class: 'card-meta' }, 'last 60 minutes')),
      s.throughput.lastHour ? throughputChart(s.throughput.buckets) : empty('No jobs finished in the last hour', 'The chart fills in as jobs complete.'),
    );
    const poolTable = s.pools.length
      ? h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table' },
            h('caption', { class: 'sr-only' }, 'Queue and runners per pool'),
            h(
              'thead',
              null,
              h(
                'tr',
                null,
                h('th', { scope: 'col' }, 'Pool'),
                h('th', { scope: 'col', class: 'num' }, 'Queued'),
                h('th', { scope: 'col', class: 'num' }, 'Oldest wait'),
                h('th', { scope: 'col', class: 'num' }, 'Avg wait (1h)'),
                h('th', { scope: 'col', class: 'num' }, 'Running'),
                h('th', { scope: 'col' }, 'Runners'),
                h('th', { scope: 'col', class: 'num' }, 'Free slots'),
              ),
            ),
            h(
              'tbody',
              null,
              s.pools.map((/** @type {any} */ p) =>
                h(
                  'tr',
                  null,
                  h(
                    'th',
                    { scope: 'row' },
                    h('a', { href: `#/jobs?pool=${encodeURIComponent(p.name)}`, 'data-key': `pool-${p.name}` }, p.name),
                    // why its jobs wait, when no runner could be started for them
                    p.queued && p.waitingReason ? h('div', { class: 'waiting-reason', 'data-testid': `waiting-${p.name}` }, p.waitingReason) : null,
                  ),
                  h('td', { class: 'num' }, count(p.queued)),
                  h('td', { class: 'num' }, p.oldestWaitMs === null ? '—' : duration(p.oldestWaitMs)),
                  h('td', { class: 'num' }, p.avgWaitMs === null ? '—' : duration(p.avgWaitMs)),
                  h('td', { class: 'num' }, count(p.running + p.claimed)),
                  h('td', null, runnerPills(p.runners, p.maxRunners)),
                  h('td', { class: 'num' }, count(p.freeSlots)),
                ),
              ),
            ),
          ),
        )
      : empty('No pools yet', ['Apply one with ', h('code', null, 'runyard pools apply -f pools.yaml'), '.']);
    const pools = h(
      'section',
      { class: 'card', 'aria-labelledby': 'pools-title' },
      h('div', { class: 'card-header' }, h('h2', { id: 'pools-title', class: 'card-title' }, 'Queues by pool'), h('a', { href: '#/pools', class: 'card-link' }, 'All pools')),
      poolTable,
    );
    const states = h(
      'section',
      { class: 'card', 'aria-labelledby': 'states-title' },
      h('div', { class: 'card-header' }, h('h2', { id: 'states-title', class: 'card-title' }, 'Runners by state'), h('a', { href: '#/runners', class: 'card-link' }, 'All runners')),
      liveRunners
        ? h(
            'ul',
            { class: 'state-counts' },
            RUNNER_STATES.map((st) => h('li', { class: (s.runners[st] ?? 0) ? '' : 'is-zero' }, h('span', { class: 'state-count' }, String(s.runners[st] ?? 0)), badge(st))),
          )
        : empty('No runners are live', 'Runners start when jobs are queued, and pools with minIdle keep some warm.'),
    );
    swap(body, tiles, chart, h('div', { class: 'grid-wide' }, pools, states));
  }

  return {
    change: () => refresh(),
    destroy() {
      clearInterval(timer);
      refresh.cancel();
      l.destroy();
    },
  };
}

/** @param {string} label @param {string} value @param {string} sub @param {string} cls */
function tile(label, value, sub, cls) {
  return h('div', { class: `tile ${cls}` }, h('div', { class: 'tile-label' }, label), h('div', { class: 'tile-value' }, value), h('div', { class: 'tile-sub' }, sub));
}

/** @param {Record<string, number>} byState @param {number} max */
export function runnerPills(byState, max) {
  const entries = Object.entries(byState).filter(([, n]) => n > 0);
  const live = entries.reduce((s, [, n]) => s + n, 0);
  return h(
    'span',
    { class: 'pills' },
    entries.length ? entries.map(([st, n]) => h('span', { class: `pill state-${st}`, title: `${n} ${st}` }, `${n} ${st}`)) : h('span', { class: 'muted' }, 'none'),
    h('span', { class: 'muted capacity' }, `${live}/${max}`),
  );
}
