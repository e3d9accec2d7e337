// @ts-check
/** What every page shares: a header, and a loader that fetches, renders and reports errors. */
import { h, swap, errorPanel, errorText } from './dom.js';

/**
 * @param {string} title @param {import('./dom.js').Child} [subtitle] @param {import('./dom.js').Child} [actions]
 */
export function pageHeader(title, subtitle, actions) {
  return h(
    'header',
    { class: 'page-header' },
    h('div', { class: 'page-heading' }, h('h1', { class: 'page-title', tabindex: '-1' }, title), subtitle ? h('p', { class: 'page-subtitle' }, subtitle) : null),
    actions ? h('div', { class: 'page-actions' }, actions) : null,
  );
}

/**
 * Loads data into `body`: the first failure replaces the page with an error and a retry
 * button; a failed refresh keeps what is shown and says, above it, that it is out of date.
 * Calls made while one is in flight coalesce into one more after it.
 * @template T
 * @param {{body: HTMLElement, notice: HTMLElement, what: string, fetch: (signal: AbortSignal) => Promise<T>, render: (data: T) => void}} o
 */
export function loader(o) {
  const abort = new AbortController();
  let loaded = false;
  let inflight = false;
  let again = false;
  const load = async () => {
    if (abort.signal.aborted) return;
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    try {
      const data = await o.fetch(abort.signal);
      if (abort.signal.aborted) return;
      o.render(data);
      loaded = true;
      o.notice.hidden = true;
    } catch (err) {
      if (abort.signal.aborted) return;
      if (!loaded) swap(o.body, errorPanel(o.what, err, () => void load()));
      else {
        o.notice.textContent = `Could not refresh ${o.what}: ${errorText(err)}. Showing what was last loaded.`;
        o.notice.hidden = false;
      }
    } finally {
      inflight = false;
      if (again && !abort.signal.aborted) {
        again = false;
        void load();
      }
    }
  };
  return {
    load,
    signal: abort.signal,
    get loaded() {
      return loaded;
    },
    destroy: () => abort.abort(),
  };
}

/** The "could not refresh" line every page keeps above its content. */
export function staleNotice() {
  return h('p', { class: 'notice notice-error', role: 'alert', hidden: true });
}
