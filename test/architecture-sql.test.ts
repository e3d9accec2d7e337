/*
 * SQL lives in src/store/ and src/queue/ only. This scans every TypeScript file under src/ for
 * string and template literals that read as SQL (a statement keyword at their start, as every
 * statement runyard sends begins) and fails naming file:line for each one found elsewhere.
 * Comments are skipped; so are regular expressions, whose `.exec(` is not a database's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');
const ALLOWED = ['src/store/', 'src/queue/'];

/** How a statement begins; a literal that begins so is SQL. */
const STATEMENT = /^\s*(select\s+\S|insert\s+into\s|update\s+\w+(\s+\w+)?\s+set\s|delete\s+from\s|with\s+\w+\s+as\s*\(|create\s+(unique\s+)?(table|index)\s|alter\s+table\s|drop\s+(table|index)\s|truncate\s)/i;

/** The string and template literals of a source text, with the line each starts on. */
export function literals(src: string): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = [];
  let line = 1;
  let i = 0;
  // the last significant character outside literals and comments: tells a regex from a division
  let prev = '';
  let prevWord = '';
  const n = src.length;
  /** One character of a literal (an escape: the character it escapes), counting lines. */
  const take = () => {
    if (src[i] === '\\') i++;
    if (src[i] === '\n') line++;
    return src[i++] ?? '';
  };
  const readQuoted = (q: string) => {
    const start = line;
    let text = '';
    i++;
    while (i < n && src[i] !== q) text += take();
    i++;
    out.push({ line: start, text });
  };
  const readTemplate = () => {
    const start = line;
    let text = '';
    i++;
    while (i < n && src[i] !== '`') {
      if (src[i] === '$' && src[i + 1] === '{') {
        // an expression: skipped to its closing brace (it may hold literals of its own)
        text += '?';
        i += 2;
        let depth = 1;
        while (i < n && depth > 0) {
          const c = src[i]!;
          if (c === '{') depth++;
          else if (c === '}') depth--;
          else if (c === '\n') line++;
          else if (c === "'" || c === '"') {
            readQuoted(c);
            continue;
          } else if (c === '`') {
            readTemplate();
            continue;
          }
          i++;
        }
        continue;
      }
      text += take();
    }
    i++;
    out.push({ line: start, text });
  };
  while (i < n) {
    const c = src[i]!;
    if (c === '\n') {
      line++;
      i++;
    } else if (c === '/' && src[i + 1] === '/') {
      while (i < n && src[i] !== '\n') i++;
    } else if (c === '/' && src[i + 1] === '*') {
      i += 2;
      while (i < n && !(src[i] === '*' && src[i + 1] === '/')) {
        if (src[i] === '\n') line++;
        i++;
      }
      i += 2;
    } else if (c === "'" || c === '"') {
      readQuoted(c);
      prev = 'x';
    } else if (c === '`') {
      readTemplate();
      prev = 'x';
    } else if (c === '/' && (prev === '' || '(,=:[!&|?{};+-*%<>~^'.includes(prev) || ['return', 'typeof', 'case', 'in', 'of', 'void'].includes(prevWord))) {
      // a regular expression literal: skipped whole, classes included
      i++;
      let inClass = false;
      while (i < n && (inClass || src[i] !== '/') && src[i] !== '\n') {
        if (src[i] === '\\') i++;
        else if (src[i] === '[') inClass = true;
        else if (src[i] === ']') inClass = false;
        i++;
      }
      i++;
      while (i < n && /[a-z]/i.test(src[i]!)) i++;
      prev = 'x';
    } else if (/\s/.test(c)) {
      i++;
    } else if (/[A-Za-z_$0-9]/.test(c)) {
      let w = '';
      while (i < n && /[A-Za-z_$0-9]/.test(src[i]!)) w += src[i++];
      prev = 'x';
      prevWord = w;
    } else {
      prev = c;
      prevWord = '';
      i++;
    }
  }
  return out;
}

/** The lines of a source text holding a literal that reads as SQL. */
export function sqlLines(src: string): number[] {
  return literals(src)
    .filter((l) => STATEMENT.test(l.text))
    .map((l) => l.line);
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

test('the scanner finds SQL in literals, and not in comments, regexes or prose', () => {
  const snippet = [
    "import { x } from './y.js';",
    '// db.query("select * from jobs") in a comment is not SQL sent',
    '/* update jobs set state = 1 */',
    'const m = /^select (\\w+) from/.exec(line);',
    "const help = 'selects the pool to use';",
    "await db.query('select id from runners where pool = $1', [pool]);",
    'await tx.query(',
    '  `with picked as (select id from jobs)',
    '   update jobs set state = ${"\'claimed\'"} from picked`,',
    ');',
    "const STMT = { name: 'n', text: `insert into events (at) values ($1)` };",
    "const ratio = a / b; const s = 'delete from jobs';",
  ].join('\n');
  assert.deepEqual(sqlLines(snippet), [6, 8, 11, 12]);
});

test('no SQL outside src/store/ and src/queue/', () => {
  const found: string[] = [];
  for (const file of tsFiles(SRC)) {
    const rel = relative(ROOT, file).split(sep).join('/');
    if (ALLOWED.some((a) => rel.startsWith(a))) continue;
    for (const l of sqlLines(readFileSync(file, 'utf8'))) found.push(`${rel}:${l}`);
  }
  assert.deepEqual(found, [], `SQL outside src/store/ and src/queue/ (move it into a store/ or queue/ module):\n  ${found.join('\n  ')}`);
});
