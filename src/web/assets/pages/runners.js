// @ts-check
/** Runners: state, pool, version, age, heartbeat and current jobs; disable, enable, drain, terminate. */
import { h, swap, badge, empty, throttle, errorText } from '../lib/dom.js';
import { timeEl, shortId } from '../lib/format.js';
import { pageHeader, loader, staleNotice } from '../lib/page.js';

/**
 * The operator actions, when each applies, and what the confirmation says (none: reversible).
 * @type {{name: string, label: string, when: string[], done: string, confirm?: (r: any) => {title: string, body: string, confirm: string}}[]}
 */
const ACTIONS = [
  { name: 'disable', label: 'Disable', when: ['idle', 'busy', 'offline'], done: 'disabled: it finishes its jobs and takes no new ones' },
  { name: 'enable', label: 'Enable', when: ['disabled'], done: 'enabled' },
  {
    name: 'drain',
    label: 'Drain',
    when: ['idle', 'busy', 'disabled'],
    done: 'draining',
    confirm: (r) => ({ title: `Drain ${r.name}?`, body: 'It finishes the jobs it is running, takes no new ones, and is then stopped. The scheduler starts a replacement if jobs need one.', confirm: 'Drain runner' }),
  },
  {
    name: 'terminate',
    label: 'Terminate',
    when: ['starting', 'idle', 'busy', 'disabled', 'offline'],
    done: 'terminating',
    confirm: (r) => ({
      title: `Terminate ${r.name}?`,
      body: r.state === 'starting' || r.state === 'offline' ? 'It is stopped now; jobs it held go back to the queue.' : 'It finishes its running jobs, then stops. This cannot be undone.',
      confirm: 'Terminate runner',
    }),
  },
];

/** @param {HTMLElement} root @param {import('../app.js').Route} route @param {import('../app.js').App} app */
export function mount(root, route, app) {
  app.setTitle('Runners');
  let q = route.query;
  const poolSelect = h('select', { id: 'runner-pool', class: 'select', onchange: () => go({ pool: poolSelect.value }) }, h('option', { value: '' }, 'All pools'));
  const allBox = h('input', { id: 'runner-all', type: 'checkbox', onchange: () => go({ all: allBox.checked ? '1' : '' }) });
  const filters = h(
    'form',
    { class: 'filters', 'aria-label': 'Filter runners', onsubmit: (/** @type {Event} */ e) => e.preventDefault() },
    h('div', { class: 'filter' }, h('label', { for: 'runner-pool', class: 'label' }, 'Pool'), poolSelect),
    h('div', { class: 'filter filter-check' }, allBox, h('label', { for: 'runner-all' }, 'Include terminated')),
  );
  const body = h('div', { class: 'page-body', 'aria-busy': 'true' }, h('p', { class: 'loading' }, 'Loading…'));
  const notice = staleNotice();
  root.append(h('div', { class: 'page' }, pageHeader('Runners', 'Agents serving the pools. Actions are recorded with your token as the actor.'), filters, notice, body));

  /** @param {Record<string, string>} change */
  function go(change) {
    const next = new URLSearchParams(q);
    for (const [k, v] of Object.entries(change)) v ? next.set(k, v) : next.delete(k);
    const s = next.toString();
    app.navigate(`#/runners${s ? `?${s}` : ''}`);
  }

  const l = loader({
    body,
    notice,
    what: 'runners',
    fetch: async (signal) => {
      const params = new URLSearchParams();
      if (q.get('pool')) params.set('pool', /** @type {string} */ (q.get('pool')));
      if (q.get('all') === '1') params.set('all', '1');
      const [r, j, p] = await Promise.all([
        app.api.get(`runners?${params}`, { signal }),
        app.api.get('jobs?state=claimed,running&limit=1000', { signal }),
        app.api.get('pools', { signal }),
      ]);
      return { runners: r.runners, jobs: j.jobs, pools: p.pools };
    },
    render,
  });
  const refresh = throttle(() => void l.load(), 500);

  function syncFilters() {
    poolSelect.value = q.get('pool') ?? '';
    allBox.checked = q.get('all') === '1';
  }
  syncFilters();
  void l.load();

  /** @param {{runners: any[], jobs: any[], pools: any[]}} d */
  function render(d) {
    body.removeAttribute('aria-busy');
    const chosen = q.get('pool') ?? '';
    poolSelect.replaceChildren(h('option', { value: '' }, 'All pools'), ...d.pools.map((p) => h('option', { value: p.name }, p.name)));
    poolSelect.value = chosen;
    /** @type {Map<string, any[]>} */
    const jobsOf = new Map();
    for (const j of d.jobs) if (j.runnerId) jobsOf.set(j.runnerId, [...(jobsOf.get(j.runnerId) ?? []), j]);
    if (!d.runners.length) {
      const hint = chosen ? `Pool ${chosen} has no ${q.get('all') === '1' ? '' : 'live '}runners.` : 'Runners start when jobs are queued; pools with minIdle keep some warm.';
      return swap(body, empty(q.get('all') === '1' ? 'No runners yet' : 'No runners are live', hint, q.get('all') === '1' ? null : h('a', { href: '#/runners?all=1' }, 'Show terminated runners')));
    }
    swap(
      body,
      h(
        'div',
        { class: 'table-wrap card' },
        h(
          'table',
          { class: 'table', 'data-testid': 'runners-table' },
          h('caption', { class: 'sr-only' }, 'Runners'),
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              ['Runner', 'State', 'Pool', 'Version', 'Age', 'Last heartbeat', 'Jobs'].map((t) => h('th', { scope: 'col' }, t)),
              h('th', { scope: 'col', class: 'actions-col' }, h('span', { class: 'sr-only' }, 'Actions')),
            ),
          ),
          h('tbody', null, d.runners.map((r) => row(r, jobsOf.get(r.id) ?? []))),
        ),
      ),
    );
  }

  /** @param {any} r @param {any[]} jobs */
  function row(r, jobs) {
    return h(
      'tr',
      { 'data-runner': r.id, 'data-state': r.state },
      h('th', { scope: 'row' }, h('div', { class: 'cell-main' }, r.name), h('div', { class: 'cell-sub mono', title: r.id }, shortId(r.id))),
      h('td', null, badge(r.state), r.stateReason ? h('div', { class: 'cell-sub' }, r.stateReason) : null),
      h('td', null, h('a', { href: `#/runners?pool=${encodeURIComponent(r.pool)}` }, r.pool)),
      h('td', { class: 'mono' }, r.version ?? '—'),
      h('td', null, timeEl(r.createdAt, 'for')),
      h('td', null, r.lastHeartbeatAt ? timeEl(r.lastHeartbeatAt) : h('span', { class: 'muted' }, 'none yet')),
      h(
        'td',
        null,
        h('span', { class: 'slots' }, `${r.activeJobs ?? jobs.length}/${r.slots}`),
        jobs.length ? h('span', { class: 'job-links' }, jobs.map((j) => h('a', { href: `#/jobs/${j.id}`, class: 'job-link' }, `#${j.id}`))) : null,
      ),
      h(
        'td',
        { class: 'actions' },
        ACTIONS.filter((a) => a.when.includes(r.state)).map((a) =>
          h(
            'button',
            {
              type: 'button',
              class: a.name === 'terminate' ? 'btn btn-sm btn-danger-outline' : 'btn btn-sm',
              'data-key': `runner-${r.id}-${a.name}`,
              'aria-label': `${a.label} runner ${r.name}`,
              onclick: (/** @type {MouseEvent} */ e) => act(a, r, /** @type {HTMLButtonElement} */ (e.currentTarget)),
            },
            a.label,
          ),
        ),
      ),
    );
  }

  /** @param {typeof ACTIONS[number]} a @param {any} r @param {HTMLButtonElement} button */
  async function act(a, r, button) {
    if (a.confirm && !(await app.confirm({ ...a.confirm(r), dismiss: 'Keep it running' }))) return;
    button.disabled = true;
    try {
      await app.api.post(`runners/${r.id}/${a.name}`);
      app.toast(`Runner ${r.name} ${a.done}.`, 'success');
    } catch (err) {
      app.toast(`Could not ${a.name} runner ${r.name}: ${errorText(err)}`, 'error');
    } finally {
      button.disabled = false;
      void l.load();
    }
  }

  return {
    change: () => refresh(),
    update(next) {
      q = next.query;
      syncFilters();
      void l.load();
      return true;
    },
    destroy() {
      refresh.cancel();
      l.destroy();
    },
  };
}
