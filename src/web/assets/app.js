// @ts-check
/**
 * The dashboard shell: hash routes, sign-in, the live fleet stream and notifications.
 *
 *   #/              overview          #/runners?pool=&all=1      runners
 *   #/pools         pools             #/jobs?state=&pool=&before= jobs (server-side paging)
 *   #/jobs/:id      job detail        #/login                    sign-in
 *
 * Live updates come from GET /api/v1/stream (server-sent events read with fetch): the current
 * page is told which jobs, runners and pools changed and refetches what it shows.
 */
import { api, auth, ApiError } from './lib/api.js';
import { h, errorText } from './lib/dom.js';
import { tick } from './lib/format.js';
import { confirmDialog } from './lib/dialog.js';
import * as overview from './pages/overview.js';
import * as pools from './pages/pools.js';
import * as runners from './pages/runners.js';
import * as jobs from './pages/jobs.js';
import * as job from './pages/job.js';
import * as login from './pages/login.js';

/**
 * @typedef {{name: string, params: Record<string, string>, query: URLSearchParams, hash: string}} Route
 * @typedef {{jobs: Set<number>, runners: Set<string>, pools: Set<string>, resync: boolean}} Change
 * @typedef {{destroy(): void, change?(c: Change): void, update?(r: Route): boolean}} Page
 * @typedef {{
 *   api: typeof api,
 *   navigate(hash: string, opts?: {replace?: boolean}): void,
 *   toast(message: string, kind?: 'error' | 'success' | 'info'): {dismiss(): void},
 *   confirm: typeof confirmDialog,
 *   signedIn(next?: string): void,
 *   setTitle(title: string): void,
 * }} App
 * @typedef {{mount(root: HTMLElement, route: Route, app: App): Page}} PageModule
 */

/** @type {Record<string, PageModule>} */
const PAGES = { overview, pools, runners, jobs, job, login };
const NAV = /** @type {const} */ ([
  ['overview', '#/', 'Overview'],
  ['pools', '#/pools', 'Pools'],
  ['runners', '#/runners', 'Runners'],
  ['jobs', '#/jobs', 'Jobs'],
]);

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const nav = /** @type {HTMLElement} */ (document.getElementById('nav'));
const live = /** @type {HTMLElement} */ (document.getElementById('live'));
const toasts = /** @type {HTMLElement} */ (document.getElementById('toasts'));
const signOut = /** @type {HTMLButtonElement} */ (document.getElementById('signout'));

/** @type {{page: Page, route: Route} | undefined} */
let current;
/** @type {AbortController | undefined} */
let streamAbort;
/** where to go after signing in */
let afterLogin = '#/';
/** the message the sign-in page shows (why the user is there) */
let loginNotice = '';
/** @type {'error' | 'info'} */
let loginNoticeKind = 'info';

/** @returns {Route} */
function parseRoute() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(1) : '/';
  const [path = '/', search = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean);
  const query = new URLSearchParams(search);
  const hash = location.hash || '#/';
  if (parts.length === 0) return { name: 'overview', params: {}, query, hash };
  if (parts.length === 1 && ['pools', 'runners', 'jobs', 'login'].includes(parts[0])) return { name: parts[0], params: {}, query, hash };
  if (parts.length === 2 && parts[0] === 'jobs' && /^\d+$/.test(parts[1])) return { name: 'job', params: { id: parts[1] }, query, hash };
  return { name: 'notfound', params: {}, query, hash };
}

/** @type {App} */
const app = {
  api,
  navigate(hash, opts = {}) {
    if (opts.replace) {
      history.replaceState(null, '', hash);
      render(false);
    } else if (location.hash === hash) render(false);
    else location.hash = hash;
  },
  toast,
  confirm: confirmDialog,
  signedIn(next) {
    loginNotice = '';
    document.body.classList.remove('signed-out');
    startStream();
    app.navigate(next && next !== '#/login' ? next : afterLogin, { replace: true });
  },
  setTitle(title) {
    document.title = `${title} · runyard`;
  },
};

/** @param {boolean} userNavigated */
function render(userNavigated) {
  const route = parseRoute();
  if (!auth.token && route.name !== 'login') {
    afterLogin = route.hash;
    history.replaceState(null, '', '#/login');
    return render(false);
  }
  if (auth.token && route.name === 'login' && !loginNotice) {
    history.replaceState(null, '', afterLogin);
    return render(false);
  }
  document.body.classList.toggle('signed-out', route.name === 'login');
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.page === route.name || (a.dataset.page === 'jobs' && route.name === 'job')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (current && current.route.name === route.name && current.page.update?.(route)) {
    current.route = route;
    return;
  }
  current?.page.destroy();
  main.replaceChildren();
  const mod = PAGES[route.name];
  if (!mod) {
    app.setTitle('Not found');
    main.append(h('div', { class: 'page' }, h('h1', { class: 'page-title', tabindex: '-1' }, 'Page not found'), h('p', null, 'There is nothing at ', h('code', null, location.hash), '. ', h('a', { href: '#/' }, 'Go to the overview'), '.')));
    current = { route, page: { destroy() {} } };
  } else {
    const extra = route.name === 'login' ? { notice: loginNotice, noticeKind: loginNoticeKind } : {};
    current = { route, page: mod.mount(main, Object.assign(route, extra), app) };
  }
  if (userNavigated) {
    const heading = /** @type {HTMLElement | null} */ (main.querySelector('h1'));
    heading?.focus({ preventScroll: false });
  }
}

// ---- notifications ---------------------------------------------------------------------------

/**
 * A notice in the corner; returns a handle to take it down early (a "Cancelling…" note once the
 * job has ended must not stay over the page).
 * @param {string} message @param {'error' | 'success' | 'info'} [kind]
 */
function toast(message, kind = 'info') {
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' }, '×');
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': `toast-${kind}` }, h('span', { class: 'toast-text' }, message), close);
  const remove = () => el.remove();
  close.addEventListener('click', remove);
  toasts.append(el);
  setTimeout(remove, kind === 'error' ? 20_000 : 6000);
  while (toasts.children.length > 4) toasts.firstElementChild?.remove();
  return { dismiss: remove };
}

/** @param {'connecting' | 'live' | 'reconnecting' | 'off'} state @param {string} [detail] */
function setLive(state, detail) {
  live.dataset.state = state;
  live.textContent = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', off: 'Offline' }[state];
  live.title = detail ?? (state === 'live' ? 'Receiving live updates from the server' : 'Live updates are not connected; pages show what they last loaded');
}

// ---- the live fleet stream -------------------------------------------------------------------

/** @type {Change} */
let pending = { jobs: new Set(), runners: new Set(), pools: new Set(), resync: false };
/** @type {ReturnType<typeof setTimeout> | undefined} */
let flushTimer;
function queueChange(/** @type {(c: Change) => void} */ fill) {
  fill(pending);
  flushTimer ??= setTimeout(() => {
    flushTimer = undefined;
    const c = pending;
    pending = { jobs: new Set(), runners: new Set(), pools: new Set(), resync: false };
    current?.page.change?.(c);
  }, 150);
}

function startStream() {
  streamAbort?.abort();
  const abort = (streamAbort = new AbortController());
  void (async () => {
    let backoff = 1000;
    let wasConnected = false;
    setLive('connecting');
    while (!abort.signal.aborted) {
      // A stream that has been silent for three pings is dead even if the socket is not closed.
      const conn = new AbortController();
      const onAbort = () => conn.abort();
      abort.signal.addEventListener('abort', onAbort, { once: true });
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let watchdog;
      const feed = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => conn.abort(), 45_000);
      };
      try {
        await api.stream('stream', {
          signal: conn.signal,
          onOpen: () => {
            feed();
            setLive('live');
            backoff = 1000;
            // Changes may have been missed while disconnected: pages reload what they show.
            if (wasConnected) queueChange((c) => (c.resync = true));
            wasConnected = true;
          },
          onEvent: (event, data) => {
            feed();
            if (event === 'jobs') queueChange((c) => data.ids.forEach((/** @type {number} */ id) => c.jobs.add(id)));
            else if (event === 'runners') queueChange((c) => data.ids.forEach((/** @type {string} */ id) => c.runners.add(id)));
            else if (event === 'pools') queueChange((c) => data.names.forEach((/** @type {string} */ n) => c.pools.add(n)));
          },
        });
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return; // handled by onUnauthorized
        if (abort.signal.aborted) return;
        setLive('reconnecting', errorText(err));
      } finally {
        clearTimeout(watchdog);
        abort.signal.removeEventListener('abort', onAbort);
      }
      if (abort.signal.aborted) return;
      setLive('reconnecting');
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 15_000);
    }
  })();
}

function stopStream() {
  streamAbort?.abort();
  streamAbort = undefined;
  setLive('off');
}

// ---- sign-in state ---------------------------------------------------------------------------

auth.onUnauthorized((err) => {
  if (!auth.token) return;
  auth.clear();
  toasts.replaceChildren();
  stopStream();
  loginNotice = `Your session ended: the server rejected the token (${err.message}). Sign in again with a valid admin token.`;
  loginNoticeKind = 'error';
  const route = parseRoute();
  if (route.name !== 'login') afterLogin = route.hash;
  history.replaceState(null, '', '#/login');
  render(false);
});

signOut.addEventListener('click', () => {
  auth.clear();
  toasts.replaceChildren();
  stopStream();
  loginNotice = 'You are signed out.';
  loginNoticeKind = 'info';
  afterLogin = '#/';
  history.replaceState(null, '', '#/login');
  render(true);
});

// ---- start -----------------------------------------------------------------------------------

document.querySelector('.skip-link')?.addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});
nav.replaceChildren(...NAV.map(([page, href, label]) => h('a', { href, class: 'nav-link', 'data-page': page }, label)));
window.addEventListener('hashchange', () => {
  if (location.hash === '' || location.hash.startsWith('#/')) render(true);
});
setInterval(tick, 1000);
if (auth.token) startStream();
else setLive('off');
render(false);
