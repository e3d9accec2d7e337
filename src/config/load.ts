import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** "pools[0].maxRunners" from a zod issue path. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`)).join('') || '(root)';
}

export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
}

const ALIASES: Record<string, string[]> = { RUNYARD_DATABASE_URL: ['store', 'url'] };

/** Every overridable key path of the schema, as RUNYARD_<PATH> in upper snake case. */
function envPaths(schema: z.ZodType, prefix: string[] = []): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let s: any = schema;
  // Arrays have unwrap() too (their element): a list is one key, set whole (RUNYARD_POOLS='[…]').
  while (s && !(s instanceof z.ZodObject) && !(s instanceof z.ZodArray) && typeof s.unwrap === 'function') s = s.unwrap();
  if (s instanceof z.ZodPipe) s = (s as any).in;
  if (!(s instanceof z.ZodObject)) return out;
  for (const [key, child] of Object.entries(s.shape)) {
    const path = [...prefix, key];
    const nested = envPaths(child as z.ZodType, path);
    if (nested.size > 0 && key !== 'classSizes') for (const [k, v] of nested) out.set(k, v);
    else out.set(`RUNYARD_${path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`, path);
  }
  return out;
}

// Keys whose values are always text, even when they look like numbers or YAML.
const TEXT_KEYS = new Set(['url', 'adminToken', 'secretKey', 'host', 'publicUrl', 'dataDir', 'webhookSecret', 'token', 'privateKeyPath', 'apiUrl']);

/** "9000" -> 9000, "true" -> true, "[a, b]" -> ["a","b"]; anything unparsable stays a string for the schema to judge. */
function parseScalar(value: string): unknown {
  try {
    return parseYaml(value) ?? value;
  } catch {
    return value;
  }
}

function setPath(target: Record<string, any>, path: string[], value: unknown) {
  let o = target;
  for (const k of path.slice(0, -1)) o = o[k] && typeof o[k] === 'object' ? o[k] : (o[k] = {});
  o[path[path.length - 1]!] = value;
}

/** Reads runyard.yaml (if given), applies RUNYARD_* env overrides and CLI overrides, validates once. */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Record<string, unknown> } = {}): Config {
  const env = opts.env ?? process.env;
  let raw: Record<string, any> = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (err) {
      throw new ConfigError([`${opts.file}: cannot read config file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
    }
    try {
      raw = parseYaml(text) ?? {};
    } catch (err) {
      throw new ConfigError([`${opts.file}: not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError([`${opts.file}: must be a YAML mapping`]);
  }
  const paths = envPaths(configSchema);
  for (const [name, value] of Object.entries(env)) {
    const path = ALIASES[name] ?? paths.get(name);
    if (!path || value === undefined) continue;
    setPath(raw, path, TEXT_KEYS.has(path[path.length - 1]!) ? value : parseScalar(value));
  }
  for (const [k, v] of Object.entries(opts.overrides ?? {})) if (v !== undefined) setPath(raw, k.split('.'), v);
  const result = configSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(formatIssues(result.error));
  return result.data;
}
