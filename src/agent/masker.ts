/**
 * Replaces secret values with *** in everything a job sends back: log lines, the output JSON and
 * error text. Multi-line secrets (keys, certificates) are also masked line by line, since logs
 * arrive one line at a time.
 */
export const MASK = '***';

export class Masker {
  /** Longest first, so a secret containing another is masked whole. */
  private readonly values: string[];

  constructor(secrets: Iterable<string>) {
    const set = new Set<string>();
    for (const s of secrets) {
      if (!s) continue;
      set.add(s);
      if (s.includes('\n')) for (const part of s.split(/\r?\n/)) if (part.trim().length >= 4) set.add(part);
    }
    this.values = [...set].sort((a, b) => b.length - a.length);
  }

  get empty(): boolean {
    return this.values.length === 0;
  }

  /** Length of the longest value: a streamed text must keep this much back to mask across chunks. */
  get longest(): number {
    return this.values[0]?.length ?? 0;
  }

  mask(text: string): string {
    for (const v of this.values) if (text.includes(v)) text = text.split(v).join(MASK);
    return text;
  }

  /**
   * The largest cut point <= `at` that does not fall inside an occurrence of a secret, so that
   * text[0, cut) can be masked and sent while the rest waits for more input.
   */
  safeCut(text: string, at: number): number {
    let cut = Math.max(0, Math.min(at, text.length));
    for (let changed = true; changed; ) {
      changed = false;
      for (const v of this.values) {
        const from = Math.max(0, cut - v.length + 1);
        const i = text.indexOf(v, from);
        if (i !== -1 && i < cut && i + v.length > cut) {
          cut = i;
          changed = true;
        }
      }
    }
    return cut;
  }

  /** Masks every string (keys included) in a JSON value, and makes it storable (see clean). */
  maskDeep(value: unknown): unknown {
    if (typeof value === 'string') return clean(this.mask(value));
    if (Array.isArray(value)) return value.map((v) => this.maskDeep(v));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[clean(this.mask(k))] = this.maskDeep(v);
      return out;
    }
    return value;
  }
}

/**
 * PostgreSQL's jsonb rejects NUL and unpaired surrogates; a job printing them must not wedge its
 * log batches or result in endless retries, so they become U+FFFD.
 */
export function clean(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}
