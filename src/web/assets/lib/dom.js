// @ts-check
/** Tiny DOM helpers: build elements without HTML strings (log lines and job data are never parsed as HTML). */

/**
 * @typedef {Node | string | number | null | undefined | false | Child[]} Child
 * @typedef {Record<string, any>} Attrs
 */

/**
 * Creates an element. Attributes: `class`, `on<event>` handlers, `dataset`, booleans (present when true).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs | null} [attrs]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
/**
 * @param {string} tag
 * @param {Attrs | null} [attrs]
 * @param {...Child} children
 * @returns {SVGElement}
 */
export function svg(tag, attrs, ...children) {
  const el = /** @type {SVGElement} */ (document.createElementNS(SVG_NS, tag));
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** @param {Element} el @param {Attrs | null | undefined} attrs */
function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : String(v));
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'dataset') Object.assign(/** @type {HTMLElement} */ (el).dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** @param {Element | DocumentFragment} el @param {Child[]} children */
export function append(el, children) {
  for (const c of /** @type {any[]} */ (children).flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/**
 * Replaces a container's children, keeping keyboard focus on the element with the same
 * `data-key` (live updates must not throw a keyboard user out of the table they are in).
 * @param {Element} container
 * @param {...Child} children
 */
export function swap(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.getAttribute('data-key') : null;
  const frag = document.createDocumentFragment();
  append(frag, children);
  container.replaceChildren(frag);
  if (key) {
    const again = /** @type {HTMLElement | null} */ (container.querySelector(`[data-key="${CSS.escape(key)}"]`));
    if (again && !again.hasAttribute('disabled')) again.focus();
    else if (container instanceof HTMLElement) focusQuietly(container.closest('main') ?? container);
  }
}

/** @param {Element} el */
function focusQuietly(el) {
  if (el instanceof HTMLElement) el.focus({ preventScroll: true });
}

/**
 * A page-level empty state.
 * @param {string} title @param {Child} [hint] @param {Child} [action]
 */
export function empty(title, hint, action) {
  return h('div', { class: 'empty' }, h('p', { class: 'empty-title' }, title), hint ? h('p', { class: 'empty-hint' }, hint) : null, action ?? null);
}

/**
 * A failed load, with the API's message and a way to try again.
 * @param {string} what @param {unknown} err @param {() => void} [retry]
 */
export function errorPanel(what, err, retry) {
  return h(
    'div',
    { class: 'error-panel', role: 'alert' },
    h('p', { class: 'error-title' }, `Could not load ${what}`),
    h('p', { class: 'error-message' }, errorText(err)),
    retry ? h('button', { type: 'button', class: 'btn', onclick: retry, 'data-key': 'retry-load' }, 'Try again') : null,
  );
}

/** @param {unknown} err */
export function errorText(err) {
  if (err && typeof err === 'object' && 'status' in err && 'message' in err) {
    const e = /** @type {{status: number, message: string, code?: string}} */ (err);
    return e.status ? `${e.message} (HTTP ${e.status}${e.code ? ` ${e.code}` : ''})` : e.message;
  }
  return err instanceof Error ? err.message : String(err);
}

/** A state badge: `queued`, `running`, `idle`, … @param {string} state @param {string} [title] */
export function badge(state, title) {
  return h('span', { class: `badge state-${state}`, title: title ?? null }, state.replace('_', ' '));
}

/** @param {string} label @param {Child} value */
export function field(label, value) {
  return [h('dt', null, label), h('dd', null, value ?? '—')];
}

/** @param {string} text */
export function code(text) {
  return h('code', null, text);
}

/**
 * Calls `fn` at most once per `ms`, with the latest arguments; trailing call guaranteed.
 * @template {any[]} A
 * @param {(...args: A) => void} fn @param {number} ms
 */
export function throttle(fn, ms) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  let last = 0;
  /** @type {A | undefined} */
  let pending;
  const run = () => {
    timer = undefined;
    last = Date.now();
    const args = /** @type {A} */ (pending);
    pending = undefined;
    fn(...args);
  };
  const throttled = /** @param {A} args */ (...args) => {
    pending = args;
    if (timer) return;
    timer = setTimeout(run, Math.max(0, last + ms - Date.now()));
  };
  throttled.cancel = () => clearTimeout(timer);
  return throttled;
}
