/*
 * The EC2 query protocol's request side: a flat form (`Action=…&Version=2016-11-15&InstanceId.1=…`)
 * read back into lists and structures, the way EC2 numbers them (1-based, dotted members).
 */

/** A parsed form with the EC2 list conventions. */
export class QueryParams {
  constructor(readonly raw: URLSearchParams) {}

  get(name: string): string | undefined {
    return this.raw.get(name) ?? undefined;
  }

  /** `Name.1`, `Name.2`, … until the first gap. */
  list(name: string): string[] {
    const out: string[] = [];
    for (let i = 1; this.raw.has(`${name}.${i}`); i++) out.push(this.raw.get(`${name}.${i}`)!);
    return out;
  }

  /** Members `prefix.N.*` as sub-queries, one per N, until the first gap. */
  members(prefix: string): QueryParams[] {
    const out: QueryParams[] = [];
    for (let i = 1; ; i++) {
      const p = `${prefix}.${i}.`;
      const sub = new URLSearchParams();
      for (const [k, v] of this.raw) if (k.startsWith(p)) sub.append(k.slice(p.length), v);
      if ([...sub.keys()].length === 0) return out;
      out.push(new QueryParams(sub));
    }
  }

  /** `Filter.N.Name` with `Filter.N.Value.M`. */
  filters(): { name: string; values: string[] }[] {
    return this.members('Filter').map((f) => ({ name: f.get('Name') ?? '', values: f.list('Value') }));
  }

  /** `Tag.N.Key` / `Tag.N.Value` (CreateTags) under `prefix`. */
  tags(prefix = 'Tag'): { key: string; value: string }[] {
    return this.members(prefix).map((t) => ({ key: t.get('Key') ?? '', value: t.get('Value') ?? '' }));
  }

  /** Everything but the listed names, as a stable string: what a ClientToken's idempotency compares. */
  fingerprint(except: string[]): string {
    return [...this.raw]
      .filter(([k]) => !except.includes(k))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
  }
}

/** EC2 filter values take `*` (any run) and `?` (one character) wildcards. */
export function matchesWildcard(pattern: string, value: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's');
  return re.test(value);
}
