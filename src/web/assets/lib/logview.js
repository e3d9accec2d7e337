// @ts-check
/**
 * A virtualised log view: lines have a fixed height and only the rows in (and near) the viewport
 * exist in the DOM, so a job with hundreds of thousands of lines scrolls as smoothly as one with
 * ten. While "follow" is on, new lines scroll into view; scrolling up turns it off, scrolling
 * back to the end turns it on again.
 */
import { PLAIN, endStyle, renderAnsi, stripAnsi } from './ansi.js';
import { clockTime } from './format.js';
import { h } from './dom.js';

const LINE_HEIGHT = 20; // px; matches .log-line in style.css
const OVERSCAN = 30;
const MIN_HEIGHT = 160;
const MAX_HEIGHT = 640;

/** @typedef {{t: number, s: string, m: string}} LogLine */
/** @typedef {import('./ansi.js').Style} Style */

export class LogView {
  constructor() {
    /** @type {string[]} */ this.text = [];
    /** @type {string[]} */ this.stream = [];
    /** @type {number[]} */ this.time = [];
    /** @type {Style[]} */ this.startStyle = [];
    /** @type {Style} */ this.style = PLAIN;
    this.follow = true;
    this.showTimes = false;
    this.first = -1;
    this.last = -1;
    this.frame = 0;
    /** where the last programmatic scroll left scrollTop: a scroll event there is not the user's */
    this.expectTop = -1;
    /** @type {(() => void) | undefined} */ this.onFollowChange = undefined;

    this.rows = h('div', { class: 'log-rows' });
    this.sizer = h('div', { class: 'log-sizer' }, this.rows);
    this.placeholder = h('div', { class: 'log-placeholder' }, 'No output yet.');
    this.el = h(
      'div',
      { class: 'log-view', tabindex: '0', role: 'log', 'aria-label': 'Job output', 'data-testid': 'log-view', onscroll: () => this.onScroll() },
      this.placeholder,
      this.sizer,
    );
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.el);
  }

  get length() {
    return this.text.length;
  }

  /** @param {string} message */
  setPlaceholder(message) {
    this.placeholder.textContent = message;
  }

  /** @param {LogLine[]} lines */
  append(lines) {
    for (const l of lines) {
      // A carriage return rewrites the line on a terminal (progress bars): keep what is left.
      let m = typeof l.m === 'string' ? l.m : String(l.m ?? '');
      const cr = m.lastIndexOf('\r', m.length - 2);
      if (cr >= 0) m = m.slice(cr + 1);
      m = m.replace(/\r$/, '');
      this.text.push(m);
      this.stream.push(l.s);
      this.time.push(l.t);
      this.startStyle.push(this.style);
      this.style = endStyle(m, this.style);
    }
    if (lines.length) this.schedule();
  }

  clear() {
    this.text = [];
    this.stream = [];
    this.time = [];
    this.startStyle = [];
    this.style = PLAIN;
    this.first = this.last = -1;
    this.schedule();
  }

  /** @param {boolean} on */
  setFollow(on) {
    if (this.follow === on) return;
    this.follow = on;
    if (on) this.scrollToEnd();
    this.onFollowChange?.();
  }

  /** @param {boolean} on */
  setShowTimes(on) {
    this.showTimes = on;
    this.el.classList.toggle('with-times', on);
    this.first = this.last = -1; // re-render rows
    this.schedule();
  }

  /** The whole log as plain text (ANSI removed), for download. */
  plainText() {
    return this.text.map((m, i) => `${new Date(this.time[i] ?? 0).toISOString()} ${this.stream[i] === 'e' ? 'stderr' : 'stdout'} ${stripAnsi(m)}`).join('\n') + '\n';
  }

  scrollToEnd() {
    this.el.scrollTop = this.el.scrollHeight;
    this.expectTop = this.el.scrollTop;
  }

  onScroll() {
    if (Math.abs(this.el.scrollTop - this.expectTop) > 1) {
      this.expectTop = -1;
      const atEnd = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - LINE_HEIGHT;
      if (atEnd !== this.follow) this.setFollow(atEnd);
    }
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const n = this.text.length;
    this.placeholder.hidden = n > 0;
    this.sizer.style.height = `${n * LINE_HEIGHT}px`;
    // Short logs get a short box; long ones scroll in at most ~60% of the window.
    const fit = Math.min(Math.max(MIN_HEIGHT, Math.round(window.innerHeight * 0.6)), MAX_HEIGHT);
    this.el.style.height = `${Math.max(MIN_HEIGHT, Math.min(fit, n * LINE_HEIGHT + 24))}px`;
    if (this.follow && n) this.scrollToEnd();
    const top = this.el.scrollTop;
    const height = this.el.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / LINE_HEIGHT) - OVERSCAN);
    const last = Math.min(n, Math.ceil((top + height) / LINE_HEIGHT) + OVERSCAN);
    if (first === this.first && last === this.last) return;
    // Reuse the rows already built when the window only grew at its end (streaming).
    if (first === this.first && last > this.last && this.last >= 0) {
      for (let i = this.last; i < last; i++) this.rows.append(this.row(i));
    } else {
      const frag = document.createDocumentFragment();
      for (let i = first; i < last; i++) frag.append(this.row(i));
      this.rows.replaceChildren(frag);
    }
    this.rows.style.transform = `translateY(${first * LINE_HEIGHT}px)`;
    this.first = first;
    this.last = last;
  }

  /** @param {number} i */
  row(i) {
    const msg = h('span', { class: 'log-msg' });
    renderAnsi(msg, this.text[i] ?? '', this.startStyle[i]);
    return h(
      'div',
      { class: this.stream[i] === 'e' ? 'log-line log-stderr' : 'log-line' },
      h('span', { class: 'log-n', 'aria-hidden': 'true' }, String(i + 1)),
      this.showTimes ? h('span', { class: 'log-t' }, clockTime(this.time[i] ?? 0)) : null,
      msg,
    );
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resize.disconnect();
  }
}
