// @ts-check
/**
 * ANSI SGR colours to DOM nodes, for job logs. Written here rather than vendored (ansi_up and
 * friends build HTML strings, which would then have to be trusted): ~100 lines, spans built with
 * textContent, so log output can never inject markup. Supports bold, dim, italic, underline,
 * inverse, the 16 colours (as classes, themable in CSS), 256 colours and 24-bit colour. Other
 * escape sequences (cursor moves, erase, OSC titles and links) are dropped.
 */

/**
 * @typedef {{fg: number | string | null, bg: number | string | null, bold: boolean, dim: boolean, italic: boolean, underline: boolean, inverse: boolean}} Style
 */

/** @type {Style} */
export const PLAIN = Object.freeze({ fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false });

// CSI … final byte | OSC … BEL or ST | other two-byte escapes
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[([0-9;:?]*)([\x20-\x2f]*[@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?/g;

/** @param {string} text */
export function stripAnsi(text) {
  return text.replace(ESCAPES, '');
}

/** 256-colour palette entries 16-255 as CSS colours. @param {number} n */
function xterm256(n) {
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16;
  const c = (/** @type {number} */ x) => (x === 0 ? 0 : 55 + x * 40);
  return `rgb(${c(Math.floor(i / 36))},${c(Math.floor(i / 6) % 6)},${c(i % 6)})`;
}

/**
 * Applies one SGR parameter list to a style.
 * @param {Style} st @param {string} params
 * @returns {Style}
 */
function applySgr(st, params) {
  const p = params === '' ? [0] : params.split(/[;:]/).map((x) => (x === '' ? 0 : Number(x)));
  const s = { ...st };
  for (let i = 0; i < p.length; i++) {
    const n = p[i];
    if (n === 0) Object.assign(s, PLAIN);
    else if (n === 1) s.bold = true;
    else if (n === 2) s.dim = true;
    else if (n === 3) s.italic = true;
    else if (n === 4) s.underline = true;
    else if (n === 7) s.inverse = true;
    else if (n === 22) s.bold = s.dim = false;
    else if (n === 23) s.italic = false;
    else if (n === 24) s.underline = false;
    else if (n === 27) s.inverse = false;
    else if (n >= 30 && n <= 37) s.fg = n - 30;
    else if (n >= 90 && n <= 97) s.fg = n - 90 + 8;
    else if (n === 39) s.fg = null;
    else if (n >= 40 && n <= 47) s.bg = n - 40;
    else if (n >= 100 && n <= 107) s.bg = n - 100 + 8;
    else if (n === 49) s.bg = null;
    else if (n === 38 || n === 48) {
      /** @type {number | string | null} */
      let colour = null;
      if (p[i + 1] === 5 && p[i + 2] !== undefined) {
        const c = Math.min(255, Math.max(0, p[i + 2]));
        colour = c < 16 ? c : xterm256(c);
        i += 2;
      } else if (p[i + 1] === 2 && p[i + 4] !== undefined) {
        const [r, g, b] = p.slice(i + 2, i + 5).map((x) => Math.min(255, Math.max(0, x)));
        colour = `rgb(${r},${g},${b})`;
        i += 4;
      }
      if (n === 38) s.fg = colour;
      else s.bg = colour;
    }
  }
  return s;
}

/**
 * Splits a line into styled runs, starting from `start` (the style the previous line ended in).
 * @param {string} text @param {Style} [start]
 * @returns {{runs: {text: string, style: Style}[], end: Style}}
 */
export function parseAnsi(text, start = PLAIN) {
  /** @type {{text: string, style: Style}[]} */
  const runs = [];
  let style = start;
  let last = 0;
  ESCAPES.lastIndex = 0;
  for (let m; (m = ESCAPES.exec(text)); ) {
    if (m.index > last) runs.push({ text: text.slice(last, m.index), style });
    if (m[2] === 'm') style = applySgr(style, m[1] ?? '');
    last = ESCAPES.lastIndex;
    if (m[0].length === 0) ESCAPES.lastIndex++;
  }
  if (last < text.length) runs.push({ text: text.slice(last), style });
  return { runs, end: style };
}

/** The style a line leaves behind, without building runs. @param {string} text @param {Style} start */
export function endStyle(text, start) {
  if (!text.includes('\x1b')) return start;
  return parseAnsi(text, start).end;
}

/**
 * Appends a line's styled runs to `parent`.
 * @param {Element} parent @param {string} text @param {Style} [start]
 */
export function renderAnsi(parent, text, start = PLAIN) {
  if (!text.includes('\x1b') && start === PLAIN) {
    parent.append(text);
    return;
  }
  for (const { text: t, style: s } of parseAnsi(text, start).runs) {
    if (s === PLAIN || (!s.fg && s.fg !== 0 && !s.bg && s.bg !== 0 && !s.bold && !s.dim && !s.italic && !s.underline && !s.inverse)) {
      parent.append(t);
      continue;
    }
    const span = document.createElement('span');
    span.textContent = t;
    let fg = s.fg;
    let bg = s.bg;
    if (s.inverse) [fg, bg] = [bg ?? 'var(--log-bg)', fg ?? 'var(--log-fg)'];
    const cls = [];
    if (typeof fg === 'number') cls.push(`ansi-fg${fg}`);
    else if (fg) span.style.color = fg;
    if (typeof bg === 'number') cls.push(`ansi-bg${bg}`);
    else if (bg) span.style.backgroundColor = bg;
    if (s.bold) cls.push('ansi-bold');
    if (s.dim) cls.push('ansi-dim');
    if (s.italic) cls.push('ansi-italic');
    if (s.underline) cls.push('ansi-underline');
    if (cls.length) span.className = cls.join(' ');
    parent.append(span);
  }
}
