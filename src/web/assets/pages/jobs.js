// @ts-check
/** Jobs: newest first, filtered by state and pool, paged on the server; cancel and retry. */
import { h, swap, badge, empty, throttle, errorText } from '../lib/dom.js';
import { timeEl, duration, toMs, shortId } from '../lib/format.js';
import { pageHeader, loader, staleNotice } from '../lib/page.js';

export const ACTIVE = ['queued', 'claimed', 'running'];
export const RETRYABLE = ['failed', 'cancelled', 'timed_out'];
const STATE_FILTERS = [
  ['', 'All states'],
  ['queued,claimed,running', 'Active'],
  ['succeeded,failed,cancelled,timed_out', 'Finished'],
  ['queued', 'Queued'],
  ['claimed', 'Claimed'],
  ['running', 'Running'],
  ['succeeded', 'Succeeded'],
  ['failed', 'Failed'],
  ['cancelled', 'Cancelled'],
  ['timed_out', 'Timed out'],
];
const PAGE_SIZES = ['25', '50', '100', '200'];

/** Cursors of the pages before this one, so "Newer" goes back the way "Older" came. @type {string[]} */
const newerCursors = [];

/** @param {HTMLElement} root @param {import('../app.js').Route} route @param {import('../app.js').App} app */
export function mount(root, route, app) {
  app.setTitle('Jobs');
  let q = route.query;
  /** @type {Set<number>} */
  let shown = new Set();

  const stateSelect = h('select', { id: 'job-state', class: 'select', onchange: () => go({ state: stateSelect.value, before: '' }) }, STATE_FILTERS.map(([v, t]) => h('option', { value: v }, t)));
  const poolSelect = h('select', { id: 'job-pool', class: 'select', onchange: () => go({ pool: poolSelect.value, before: '' }) }, h('option', { value: '' }, 'All pools'));
  const sizeSelect = h('select', { id: 'job-limit', class: 'select', onchange: () => go({ limit: sizeSelect.value === '50' ? '' : sizeSelect.value, before: '' }) }, PAGE_SIZES.map((s) => h('option', { value: s }, `${s} per page`)));
  const filters = h(
    'form',
    { class: 'filters', 'aria-label': 'Filter jobs', onsubmit: (/** @type {Event} */ e) => e.preventDefault() },
    h('div', { class: 'filter' }, h('label', { for: 'job-state', class: 'label' }, 'State'), stateSelect),
    h('div', { class: 'filter' }, h('label', { for: 'job-pool', class: 'label' }, 'Pool'), poolSelect),
    h('div', { class: 'filter' }, h('label', { for: 'job-limit', class: 'label' }, 'Page size'), sizeSelect),
  );
  const body = h('div', { class: 'page-body', 'aria-busy': 'true' }, h('p', { class: 'loading' }, 'Loading…'));
  const notice = staleNotice();
  root.append(h('div', { class: 'page' }, pageHeader('Jobs', 'Newest first. Submit with the CLI or POST /api/v1/jobs.'), filters, notice, body));

  /** @param {Record<string, string>} change */
  function go(change) {
    const next = new URLSearchParams(q);
    for (const [k, v] of Object.entries(change)) v ? next.set(k, v) : next.delete(k);
    if (change.before === '') newerCursors.length = 0;
    const s = next.toString();
    app.navigate(`#/jobs${s ? `?${s}` : ''}`);
  }

  const l = loader({
    body,
    notice,
    what: 'jobs',
    fetch: async (signal) => {
      const params = new URLSearchParams({ limit: q.get('limit') ?? '50' });
      for (const k of ['state', 'pool', 'before']) if (q.get(k)) params.set(k, /** @type {string} */ (q.get(k)));
      const [j, p] = await Promise.all([app.api.get(`jobs?${params}`, { signal }), app.api.get('pools', { signal })]);
      return { jobs: j.jobs, nextBefore: j.nextBefore, pools: p.pools };
    },
    render,
  });
  const refresh = throttle(() => void l.load(), 500);

  function syncFilters() {
    stateSelect.value = q.get('state') ?? '';
    if (stateSelect.selectedIndex < 0) stateSelect.value = '';
    sizeSelect.value = q.get('limit') ?? '50';
  }
  syncFilters();
  void l.load();

  /** @param {{jobs: any[], nextBefore: number | null, pools: any[]}} d */
  function render(d) {
    body.removeAttribute('aria-busy');
    poolSelect.replaceChildren(h('option', { value: '' }, 'All pools'), ...d.pools.map((p) => h('option', { value: p.name }, p.name)));
    poolSelect.value = q.get('pool') ?? '';
    shown = new Set(d.jobs.map((j) => j.id));
    const filtered = !!(q.get('state') || q.get('pool'));
    const before = q.get('before');
    if (!d.jobs.length) {
      if (before) return swap(body, empty('No older jobs', null, h('a', { href: '#/jobs', onclick: () => (newerCursors.length = 0) }, 'Back to the newest jobs')));
      if (filtered) return swap(body, empty('No jobs match these filters', null, h('a', { href: '#/jobs' }, 'Clear the filters')));
      return swap(
        body,
        empty('No jobs yet', ['Submit one with ', h('code', null, 'runyard jobs submit -- echo hello'), ' or ', h('code', null, 'POST /api/v1/jobs'), '; it appears here at once.']),
      );
    }
    const first = d.jobs[0].id;
    const last = d.jobs[d.jobs.length - 1].id;
    const pager = h(
      'nav',
      { class: 'pager', 'aria-label': 'Pages' },
      h(
        'button',
        {
          type: 'button',
          class: 'btn btn-sm',
          disabled: !before,
          'data-key': 'page-newer',
          onclick: () => {
            const prev = newerCursors.pop();
            const next = new URLSearchParams(q);
            if (prev) next.set('before', prev);
            else next.delete('before');
            const s = next.toString();
            app.navigate(`#/jobs${s ? `?${s}` : ''}`);
          },
        },
        '← Newer',
      ),
      h('span', { class: 'pager-range' }, `Jobs #${first} – #${last}`),
      h(
        'button',
        {
          type: 'button',
          class: 'btn btn-sm',
          disabled: !d.nextBefore,
          'data-key': 'page-older',
          onclick: () => {
            newerCursors.push(before ?? '');
            const next = new URLSearchParams(q);
            next.set('before', String(d.nextBefore));
            app.navigate(`#/jobs?${next}`);
          },
        },
        'Older →',
      ),
    );
    swap(
      body,
      h(
        'div',
        { class: 'table-wrap card' },
        h(
          'table',
          { class: 'table', 'data-testid': 'jobs-table' },
          h('caption', { class: 'sr-only' }, 'Jobs'),
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              ['Job', 'State', 'Pool', 'Command', 'Runner', 'Attempt', 'Submitted', 'Duration'].map((t) => h('th', { scope: 'col' }, t)),
              h('th', { scope: 'col', class: 'actions-col' }, h('span', { class: 'sr-only' }, 'Actions')),
            ),
          ),
          h('tbody', null, d.jobs.map(row)),
        ),
      ),
      pager,
    );
  }

  /** @param {any} j */
  function row(j) {
    const cmd = (j.commands ?? []).join(' && ');
    return h(
      'tr',
      { 'data-job': j.id, 'data-state': j.state },
      h('th', { scope: 'row' }, h('a', { href: `#/jobs/${j.id}`, class: 'job-id', 'data-key': `job-${j.id}-link` }, `#${j.id}`)),
      h('td', null, badge(j.state), j.cancelRequested && ACTIVE.includes(j.state) ? h('div', { class: 'cell-sub' }, 'cancelling…') : null),
      h('td', null, j.pool),
      h('td', { class: 'cmd' }, h('code', { title: cmd }, cmd.length > 200 ? `${cmd.slice(0, 200)}…` : cmd)),
      h('td', { class: 'mono' }, j.runnerId ? h('span', { title: j.runnerId }, shortId(j.runnerId)) : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'num' }, `${j.attempt}/${j.maxAttempts}`),
      h('td', { class: 'nowrap' }, timeEl(j.createdAt)),
      h('td', { class: 'nowrap' }, jobDuration(j)),
      h('td', { class: 'actions' }, actions(j)),
    );
  }

  /** @param {any} j */
  function actions(j) {
    if (ACTIVE.includes(j.state))
      return h(
        'button',
        { type: 'button', class: 'btn btn-sm btn-danger-outline', 'data-key': `job-${j.id}-cancel`, 'aria-label': `Cancel job ${j.id}`, disabled: j.cancelRequested, onclick: (/** @type {MouseEvent} */ e) => cancelJob(app, j, /** @type {HTMLButtonElement} */ (e.currentTarget), () => void l.load()) },
        'Cancel',
      );
    if (RETRYABLE.includes(j.state))
      return h(
        'button',
        { type: 'button', class: 'btn btn-sm', 'data-key': `job-${j.id}-retry`, 'aria-label': `Retry job ${j.id}`, onclick: (/** @type {MouseEvent} */ e) => retryJob(app, j, /** @type {HTMLButtonElement} */ (e.currentTarget), () => void l.load()) },
        'Retry',
      );
    return null;
  }

  return {
    change(c) {
      // The first page may gain new jobs; other pages only change when a job on them does.
      if (c.resync || !q.get('before') || [...c.jobs].some((id) => shown.has(id))) refresh();
    },
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

/** "12s", "running 1m 02s", "waiting 5s" @param {any} j */
export function jobDuration(j) {
  const started = toMs(j.startedAt);
  const finished = toMs(j.finishedAt);
  if (started !== null && finished !== null) return duration(finished - started);
  if (started !== null) return h('span', null, 'running ', timeEl(started, 'for'));
  if (finished !== null) return h('span', { class: 'muted' }, 'never started');
  if (j.state === 'queued') return h('span', { class: 'muted' }, 'waiting ', timeEl(j.queuedAt, 'for'));
  return '—';
}

/** "Cancelling…" notes by job: taken down when the job is seen finished (see jobSettled). */
const cancelling = new Map();

/** The job has ended: a note that it is being cancelled is no longer true. @param {number} id */
export function jobSettled(id) {
  cancelling.get(id)?.dismiss();
  cancelling.delete(id);
}

/**
 * Cancel with confirmation; the API's refusal (409 when the job already finished) is shown.
 * @param {import('../app.js').App} app @param {any} j @param {HTMLButtonElement} button @param {() => void} after
 */
export async function cancelJob(app, j, button, after) {
  const running = j.state !== 'queued';
  const ok = await app.confirm({
    title: `Cancel job #${j.id}?`,
    body: running ? 'The runner stops its processes (SIGTERM, then SIGKILL after a grace period). The job ends as cancelled.' : 'It has not started; it is removed from the queue at once.',
    confirm: 'Cancel job',
    dismiss: running ? 'Keep running' : 'Keep it queued',
  });
  if (!ok) return;
  button.disabled = true;
  try {
    const r = await app.api.post(`jobs/${j.id}/cancel`);
    if (r.job.state === 'cancelled') app.toast(`Job #${j.id} cancelled.`, 'success');
    else cancelling.set(j.id, app.toast(`Cancelling job #${j.id}: its runner was told to stop it.`, 'success'));
  } catch (err) {
    app.toast(`Could not cancel job #${j.id}: ${errorText(err)}`, 'error');
    button.disabled = false;
  } finally {
    after();
  }
}

/** @param {import('../app.js').App} app @param {any} j @param {HTMLButtonElement} button @param {() => void} after */
export async function retryJob(app, j, button, after) {
  button.disabled = true;
  try {
    await app.api.post(`jobs/${j.id}/retry`);
    app.toast(`Job #${j.id} is queued again.`, 'success');
  } catch (err) {
    app.toast(`Could not retry job #${j.id}: ${errorText(err)}`, 'error');
    button.disabled = false;
  } finally {
    after();
  }
}
