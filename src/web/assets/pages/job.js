// @ts-check
/**
 * One job: its state and actions, the timeline of transitions with reasons, payload and output,
 * and its logs, which follow the job live (the logs' own server-sent events, read with fetch)
 * in a virtualised view, with ANSI colours and a download.
 */
import { h, swap, badge, empty, field, throttle, errorPanel } from '../lib/dom.js';
import { timeEl, duration, toMs, absolute } from '../lib/format.js';
import { ApiError } from '../lib/api.js';
import { LogView } from '../lib/logview.js';
import { pageHeader, staleNotice } from '../lib/page.js';
import { ACTIVE, RETRYABLE, cancelJob, retryJob, jobDuration, jobSettled } from './jobs.js';

/** @param {HTMLElement} root @param {import('../app.js').Route} route @param {import('../app.js').App} app */
export function mount(root, route, app) {
  const id = Number(route.params.id);
  app.setTitle(`Job #${id}`);
  const abort = new AbortController();
  const signal = abort.signal;

  const head = h('div', { class: 'job-head' }, pageHeader(`Job #${id}`, 'Loading…'));
  const notice = staleNotice();
  const top = h('div', { class: 'job-top', 'aria-busy': 'true' });
  const bottom = h('div', { class: 'job-bottom' });

  // ---- logs ----
  const view = new LogView();
  const logStatus = h('span', { class: 'log-status', role: 'status', 'data-testid': 'log-status' }, 'Connecting…');
  const lineCount = h('span', { class: 'log-count', 'data-testid': 'log-count' }, '0 lines');
  const followBtn = h('button', { type: 'button', class: 'btn btn-sm', 'aria-pressed': 'true', onclick: () => view.setFollow(!view.follow) }, 'Follow');
  const timesBtn = h(
    'button',
    {
      type: 'button',
      class: 'btn btn-sm',
      'aria-pressed': 'false',
      onclick: () => {
        view.setShowTimes(!view.showTimes);
        timesBtn.setAttribute('aria-pressed', String(view.showTimes));
      },
    },
    'Timestamps',
  );
  const downloadBtn = h('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'log-download', onclick: download }, 'Download');
  view.onFollowChange = () => followBtn.setAttribute('aria-pressed', String(view.follow));
  const logCard = h(
    'section',
    { class: 'card log-card', 'aria-labelledby': 'logs-title' },
    h(
      'div',
      { class: 'card-header log-toolbar' },
      h('div', { class: 'log-title' }, h('h2', { id: 'logs-title', class: 'card-title' }, 'Logs'), logStatus, lineCount),
      h('div', { class: 'toolbar-actions' }, timesBtn, followBtn, downloadBtn),
    ),
    view.el,
  );

  root.append(h('div', { class: 'page page-wide' }, h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/jobs' }, 'Jobs'), h('span', { 'aria-hidden': 'true' }, ' / '), h('span', { 'aria-current': 'page' }, `#${id}`)), head, notice, top, logCard, bottom));

  /** @type {any} */
  let job;
  let loaded = false;
  let logsEnded = false;
  let following = false;
  let inflight = false;
  let again = false;
  let lastSeq = 0;

  async function load() {
    if (signal.aborted) return;
    if (inflight) return void (again = true);
    inflight = true;
    try {
      const [j, e] = await Promise.all([app.api.get(`jobs/${id}`, { signal }), app.api.get(`jobs/${id}/events`, { signal })]);
      if (signal.aborted) return;
      job = j.job;
      render(job, e.events);
      loaded = true;
      notice.hidden = true;
      if (!following && (!logsEnded || ACTIVE.includes(job.state))) void followLogs();
    } catch (err) {
      if (signal.aborted) return;
      if (!loaded) {
        swap(head, pageHeader(`Job #${id}`));
        swap(top, errorPanel(`job #${id}`, err, () => void load()));
        logCard.hidden = true;
      } else {
        notice.textContent = `Could not refresh job #${id}: ${err instanceof Error ? err.message : err}. Showing what was last loaded.`;
        notice.hidden = false;
      }
    } finally {
      inflight = false;
      if (again) {
        again = false;
        void load();
      }
    }
  }
  const refresh = throttle(() => void load(), 300);

  async function followLogs() {
    following = true;
    logsEnded = false;
    let after = view.length ? lastSeq : 0;
    let backoff = 1000;
    try {
      while (!signal.aborted && !logsEnded) {
        try {
          await app.api.stream(`jobs/${id}/logs?follow=1&after=${after}`, {
            signal,
            onOpen: () => {
              backoff = 1000;
              setLogStatus();
            },
            onEvent: (event, data) => {
              if (event === 'log') {
                view.append(data.lines);
                after = lastSeq = data.seq;
                lineCount.textContent = `${view.length.toLocaleString('en-US')} ${view.length === 1 ? 'line' : 'lines'}`;
              } else if (event === 'waiting') {
                refresh(); // the reason is on the job: show it
              } else if (event === 'end') {
                logsEnded = true;
                setLogStatus(data);
                refresh();
              }
            },
          });
        } catch (err) {
          if (signal.aborted) return;
          if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
            logStatus.textContent = `Logs unavailable: ${err.message}`;
            logStatus.dataset.state = 'error';
            return;
          }
          logStatus.textContent = 'Reconnecting…';
          logStatus.dataset.state = 'reconnecting';
        }
        if (logsEnded || signal.aborted) return;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 10_000);
      }
    } finally {
      following = false;
    }
  }

  /** @param {{state: string, exitCode: number | null, error: string | null}} [end] */
  function setLogStatus(end) {
    if (end) {
      logStatus.textContent = `Complete · ${end.state.replace('_', ' ')}${end.exitCode !== null && end.exitCode !== undefined ? ` (exit ${end.exitCode})` : ''}`;
      logStatus.dataset.state = 'ended';
      view.setPlaceholder('This job wrote no output.');
      return;
    }
    const waiting = job && (job.state === 'queued' || job.state === 'claimed');
    logStatus.textContent = waiting ? 'Waiting for the job to start' : 'Streaming live';
    logStatus.dataset.state = waiting ? 'waiting' : 'live';
    view.setPlaceholder(waiting ? 'Waiting for a runner to start the job…' : 'No output yet.');
  }

  function download() {
    const blob = new Blob([view.plainText()], { type: 'text/plain;charset=utf-8' });
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: `runyard-job-${id}.log`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  /** @param {any} j @param {any[]} events */
  function render(j, events) {
    top.removeAttribute('aria-busy');
    logCard.hidden = false;
    if (!ACTIVE.includes(j.state)) jobSettled(j.id);
    const cmd = (j.commands ?? []).join(' && ');
    const actions = [];
    if (ACTIVE.includes(j.state))
      actions.push(
        h(
          'button',
          { type: 'button', class: 'btn btn-danger', 'data-key': 'job-cancel', disabled: j.cancelRequested, onclick: (/** @type {MouseEvent} */ e) => cancelJob(app, j, /** @type {HTMLButtonElement} */ (e.currentTarget), refresh) },
          j.cancelRequested ? 'Cancelling…' : 'Cancel job',
        ),
      );
    if (RETRYABLE.includes(j.state))
      actions.push(h('button', { type: 'button', class: 'btn', 'data-key': 'job-retry', onclick: (/** @type {MouseEvent} */ e) => retryJob(app, j, /** @type {HTMLButtonElement} */ (e.currentTarget), refresh) }, 'Retry'));
    swap(
      head,
      pageHeader(
        `Job #${j.id}`,
        h('span', { class: 'job-state-line' }, badge(j.state), h('span', { 'data-testid': 'job-state', class: 'sr-only' }, j.state), j.cancelRequested && ACTIVE.includes(j.state) ? h('span', { class: 'muted' }, 'cancel requested') : null, h('code', { class: 'job-cmd', title: cmd }, cmd)),
        actions,
      ),
    );
    if (!following && !logsEnded) setLogStatus();

    const exit = j.exitCode === null || j.exitCode === undefined ? '—' : String(j.exitCode);
    swap(
      top,
      h(
        'dl',
        { class: 'metrics job-metrics' },
        metric('Pool', h('a', { href: `#/jobs?pool=${encodeURIComponent(j.pool)}` }, j.pool)),
        metric('Runner', j.runnerId ? h('a', { href: `#/runners?pool=${encodeURIComponent(j.pool)}`, class: 'mono', title: j.runnerId }, j.runnerId.slice(0, 8)) : h('span', { class: 'muted' }, 'none yet')),
        metric('Attempt', `${j.attempt} of ${j.maxAttempts}`),
        metric('Exit code', h('span', { class: j.exitCode ? 'exit-bad' : '' }, exit)),
        metric('Submitted', timeEl(j.createdAt)),
        metric('Duration', jobDuration(j)),
      ),
      j.state === 'queued' && j.waitingReason ? h('div', { class: 'callout callout-warn', role: 'status', 'data-testid': 'job-waiting' }, h('strong', null, 'Waiting: '), j.waitingReason) : null,
      j.error && j.error.replace(/\W/g, '').toLowerCase() !== j.state.replace('_', '')
        ? j.state === 'cancelled'
          ? h('div', { class: 'callout', role: 'note' }, h('strong', null, 'Cancelled: '), j.error)
          : h('div', { class: 'callout callout-error', role: 'note' }, h('strong', null, 'Error: '), j.error)
        : null,
    );

    swap(
      bottom,
      h(
        'div',
        { class: 'grid-2' },
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'timeline-title' },
          h('div', { class: 'card-header' }, h('h2', { id: 'timeline-title', class: 'card-title' }, 'Timeline')),
          events.length ? h('ol', { class: 'timeline' }, events.map(timelineItem)) : empty('No transitions recorded'),
        ),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'details-title' },
          h('div', { class: 'card-header' }, h('h2', { id: 'details-title', class: 'card-title' }, 'Details')),
          h(
            'dl',
            { class: 'fields' },
            field('Commands', h('ol', { class: 'commands' }, (j.commands ?? []).map((/** @type {string} */ c) => h('li', null, h('code', null, c))))),
            field('Source', j.source + (j.externalId ? ` (${j.externalId})` : '')),
            field('Timeout', duration(j.timeoutMs)),
            field('Retry on failure', j.retryOnFailure ? 'yes' : 'no'),
            field('Env', Object.keys(j.env ?? {}).length ? h('code', null, Object.entries(j.env).map(([k, v]) => `${k}=${v}`).join('\n')) : 'none'),
            field('Secrets', j.secretNames?.length ? j.secretNames.join(', ') : 'none'),
            j.labels?.length ? field('Labels', j.labels.join(', ')) : null,
            j.image ? field('Image', h('code', null, j.image)) : null,
            j.idempotencyKey ? field('Idempotency key', h('code', null, j.idempotencyKey)) : null,
            field('Queued', toMs(j.queuedAt) ? absolute(/** @type {number} */ (toMs(j.queuedAt))) : '—'),
            field('Started', toMs(j.startedAt) ? absolute(/** @type {number} */ (toMs(j.startedAt))) : '—'),
            field('Finished', toMs(j.finishedAt) ? absolute(/** @type {number} */ (toMs(j.finishedAt))) : '—'),
          ),
        ),
      ),
      h(
        'div',
        { class: 'grid-2' },
        jsonCard('payload', 'Payload', j.payload, 'No payload was submitted with this job.'),
        jsonCard('output', 'Output', j.output, j.finishedAt ? 'The job wrote no JSON to $RUNYARD_OUTPUT.' : 'Available when the job finishes, if it writes JSON to $RUNYARD_OUTPUT.'),
      ),
    );
  }

  void load();

  return {
    change(c) {
      if (c.resync || c.jobs.has(id)) refresh();
    },
    destroy() {
      abort.abort();
      refresh.cancel();
      view.destroy();
    },
  };
}

/** @param {string} label @param {import('../lib/dom.js').Child} value */
function metric(label, value) {
  return h('div', { class: 'metric' }, h('dt', null, label), h('dd', null, h('span', { class: 'metric-value metric-value-sm' }, value)));
}

/** @param {any} e */
function timelineItem(e) {
  const same = e.fromState === e.toState;
  return h(
    'li',
    { class: `timeline-item state-edge-${e.toState ?? 'none'}` },
    h('span', { class: 'timeline-dot', 'aria-hidden': 'true' }),
    h(
      'div',
      { class: 'timeline-body' },
      h(
        'div',
        { class: 'timeline-states' },
        e.fromState && !same ? [badge(e.fromState), h('span', { class: 'arrow', 'aria-label': 'to' }, '→')] : null,
        e.toState ? badge(e.toState) : null,
        h('span', { class: 'timeline-reason' }, e.reason ?? ''),
      ),
      h('div', { class: 'timeline-meta' }, timeEl(e.at), e.actor ? h('span', null, ' · by ', h('span', { class: 'mono' }, e.actor)) : null),
    ),
  );
}

/** @param {string} key @param {string} title @param {unknown} value @param {string} none */
function jsonCard(key, title, value, none) {
  return h(
    'section',
    { class: 'card', 'aria-labelledby': `${key}-title` },
    h('div', { class: 'card-header' }, h('h2', { id: `${key}-title`, class: 'card-title' }, title)),
    value === null || value === undefined ? empty(none) : h('pre', { class: 'json', tabindex: '0', 'data-testid': `job-${key}` }, JSON.stringify(value, null, 2)),
  );
}
