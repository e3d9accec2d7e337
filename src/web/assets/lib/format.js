// @ts-check
/** Times and durations as people read them; the server's clock is the reference. */

let offsetMs = 0;

/** Aligns "now" with the server (from the HTTP Date header), so "5s ago" is not skewed. @param {string | null} dateHeader */
export function syncClock(dateHeader) {
  if (!dateHeader) return;
  const server = Date.parse(dateHeader);
  // The header has 1 s resolution: only correct skews larger than that.
  if (Number.isFinite(server) && Math.abs(server - Date.now() - offsetMs) > 1500) offsetMs = server - Date.now();
}

export function serverNow() {
  return Date.now() + offsetMs;
}

/** @param {string | number | Date | null | undefined} v */
export function toMs(v) {
  if (v === null || v === undefined) return null;
  const ms = typeof v === 'number' ? v : new Date(v).getTime();
  return Number.isFinite(ms) ? ms : null;
}

/** "850ms", "12s", "3m 05s", "2h 10m", "3d 4h" @param {number | null | undefined} ms */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  ms = Math.max(0, ms);
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

/** "just now", "12s ago", "5m ago", "3h ago", "2d ago" @param {number} ms */
export function ago(ms) {
  const d = serverNow() - ms;
  if (d < 2000) return 'just now';
  const s = Math.floor(d / 1000);
  if (s < 60) return `${s}s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ago`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ago`;
  return `${Math.floor(hr / 24)}d ago`;
}

/** "2024-05-01 14:03:22" in the viewer's time zone @param {number} ms */
export function absolute(ms) {
  const d = new Date(ms);
  const p = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "14:03:22.120" @param {number} ms */
export function clockTime(ms) {
  const d = new Date(ms);
  const p = (/** @type {number} */ n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/**
 * A <time> that keeps itself current: "ago" (since) or "for" (elapsed until now), refreshed by tick().
 * @param {string | number | Date | null | undefined} v @param {'ago' | 'for'} [mode]
 */
export function timeEl(v, mode = 'ago') {
  const ms = toMs(v);
  const el = document.createElement('time');
  if (ms === null) {
    el.textContent = '—';
    return el;
  }
  el.dateTime = new Date(ms).toISOString();
  el.title = absolute(ms);
  el.dataset.since = String(ms);
  el.dataset.mode = mode;
  el.textContent = mode === 'ago' ? ago(ms) : elapsed(ms);
  return el;
}

/** A live "for how long": whole seconds, since it only updates once a second. @param {number} since */
function elapsed(since) {
  const d = serverNow() - since;
  return d < 1000 ? '<1s' : duration(d);
}

/** Refreshes every live <time> on the page (called every second; no network). */
export function tick() {
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('time[data-since]'))) {
    const ms = Number(el.dataset.since);
    const text = el.dataset.mode === 'for' ? elapsed(ms) : ago(ms);
    if (el.textContent !== text) el.textContent = text;
  }
}

/** First 8 characters of a UUID @param {string | null | undefined} id */
export function shortId(id) {
  return id ? id.slice(0, 8) : '—';
}

/** @param {number} n */
export function count(n) {
  return n.toLocaleString('en-US');
}
