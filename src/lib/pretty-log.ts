/**
 * Readable log lines for a terminal, from pino's JSON lines: `12:03:04 INFO  message  key=value …`.
 * A few lines of our own instead of pino-pretty (and its dependencies); JSON stays the format
 * for files and pipes, where tools read it.
 */
const LEVELS: Record<number, [string, string]> = {
  10: ['TRACE', '90'],
  20: ['DEBUG', '36'],
  30: ['INFO ', '32'],
  40: ['WARN ', '33'],
  50: ['ERROR', '31'],
  60: ['FATAL', '35'],
};
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'name', 'v']);

export function prettyLine(json: string, color: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json);
  } catch {
    return json.endsWith('\n') ? json : json + '\n';
  }
  const paint = (code: string, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const [label, code] = LEVELS[o.level as number] ?? [String(o.level).padEnd(5), '0'];
  const time = new Date(typeof o.time === 'number' ? o.time : Date.now()).toTimeString().slice(0, 8);
  const fields: string[] = [];
  let stack = '';
  for (const [k, v] of Object.entries(o)) {
    if (SKIP.has(k) || v === undefined) continue;
    if (k === 'err' && v && typeof v === 'object') {
      const e = v as { message?: string; stack?: string };
      fields.push(`err=${quote(e.message ?? '')}`);
      if (e.stack) stack = '\n' + e.stack.split('\n').slice(1).map((l) => `    ${l.trim()}`).join('\n');
      continue;
    }
    fields.push(`${paint('2', k + '=')}${typeof v === 'string' ? quote(v) : JSON.stringify(v)}`);
  }
  return `${paint('2', time)} ${paint(code, label)} ${o.msg ?? ''}${fields.length ? '  ' + fields.join(' ') : ''}${stack}\n`;
}

const quote = (s: string) => (/^[^\s"=]*$/.test(s) && s !== '' ? s : JSON.stringify(s));
