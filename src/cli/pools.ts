import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CliError } from './client.js';
import { bad, clientOf, formatMs, hint404, parsePoolName, printFields, printJson, printTable, when } from './output.js';

export function registerPools(program: Command): void {
  const pools = program.command('pools').description('list, inspect and configure pools');

  pools
    .command('list')
    .description('list pools with their runners and queued jobs')
    .option('--json', 'print the API response as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const r = await clientOf(cmd).request<{ pools: any[] }>('GET', '/api/v1/pools');
      if (opts.json) return printJson(r);
      printTable(
        ['NAME', 'PROVIDER', 'CLASS', 'RUNNERS', 'QUEUED', 'MIN IDLE', 'MAX RUNNERS', 'JOBS/RUNNER', 'SOURCE'],
        r.pools.map((p) => [p.name, p.config.provider, p.config.class, runnerSummary(p.runners), p.queued, p.config.minIdle, p.config.maxRunners, p.config.maxJobsPerRunner, p.source]),
        'no pools; create one with `runyard pools apply -f pool.yaml`',
      );
    });

  pools
    .command('show')
    .description('show one pool: its configuration, runners and queue')
    .argument('<name>', 'pool name')
    .option('--json', 'print the pool as JSON')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      parsePoolName(name, 'pool name');
      const { pool: p } = await hint404(clientOf(cmd).request<{ pool: any }>('GET', `/api/v1/pools/${name}`), 'list pools with `runyard pools list`');
      if (opts.json) return printJson({ pool: p });
      const c = p.config;
      printFields([
        ['name', p.name],
        ['provider', c.provider],
        ['image', c.image],
        ['class', c.class],
        ['labels', (c.labels ?? []).join(', ')],
        ['runners', runnerSummary(p.runners)],
        ['queued jobs', p.queued],
        ['max jobs/runner', c.maxJobsPerRunner],
        ['min idle', c.minIdle],
        ['max runners', c.maxRunners],
        ['idle timeout', formatMs(c.idleTimeout)],
        ['max lifetime', formatMs(c.maxLifetime)],
        ['start timeout', formatMs(c.startTimeout)],
        ['job timeout', formatMs(c.jobTimeout)],
        ['ephemeral', c.ephemeral ? 'yes' : 'no'],
        ['distribution', c.distribution],
        ['setup', c.setup?.length ? '\n' + c.setup.map((s: string) => `  - ${s}`).join('\n') : undefined],
        ['env', Object.keys(c.env ?? {}).join(', ')],
        ['config hash', p.configHash],
        ['source', p.source],
        ['created', when(p.createdAt)],
        ['updated', when(p.updatedAt)],
      ]);
    });

  pools
    .command('delete')
    .description('delete a pool that has no live runner and no unfinished job (refused otherwise, naming what is left)')
    .argument('<name>', 'pool name')
    .option('--json', 'print the deleted pool as JSON')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      parsePoolName(name, 'pool name');
      const r = await hint404(clientOf(cmd).request<{ pool: any; inConfig: boolean }>('DELETE', `/api/v1/pools/${name}`), 'list pools with `runyard pools list`');
      if (opts.json) return printJson(r);
      process.stdout.write(`pool ${name} deleted\n`);
      if (r.inConfig) process.stderr.write(`note: pool ${name} is in the server's runyard.yaml; remove it there too, or it comes back at the next start\n`);
    });

  pools
    .command('apply')
    .description('create or replace pools from a YAML file (one pool, a list of pools, or {pools: [...]})')
    .requiredOption('-f, --file <file.yaml>', 'YAML (or JSON) file; "-" reads stdin')
    .option('--json', 'print the applied pools as JSON')
    .addHelpText('after', '\nExample pool.yaml:\n  name: ci\n  provider: process\n  maxJobsPerRunner: 2\n  minIdle: 1\n  maxRunners: 8\n  idleTimeout: 10m')
    .action(async (opts: { file: string; json?: boolean }, cmd: Command) => {
      const list = await readPoolsFile(opts.file);
      const r = await clientOf(cmd)
        .request<{ pools: any[] }>('POST', '/api/v1/pools', { pools: list })
        .catch((err) => {
          // pools[i] in the server's message counts the pools in the file, in order
          if (err instanceof CliError && err.exitCode === 2) throw new CliError(`${err.message}\nfix it in ${opts.file} and apply again; nothing was changed`, 2, err.status);
          throw err;
        });
      if (opts.json) return printJson(r);
      for (const p of r.pools) {
        if (p.created) process.stdout.write(`pool ${p.name} created\n`);
        else if (p.configChanged) process.stdout.write(`pool ${p.name} updated; config changed: its runners finish their jobs and are replaced\n`);
        else process.stdout.write(`pool ${p.name} updated\n`);
      }
    });
}

/** Reads pools from YAML: a pool, a list, {pools: [...]} (a whole runyard.yaml too), or several documents. */
export async function readPoolsFile(file: string): Promise<Record<string, unknown>[]> {
  // loaded here, not at start-up: every other command would pay for them
  const [{ parseAllDocuments }, { poolSchema }, { formatPath }] = await Promise.all([import('yaml'), import('../config/schema.js'), import('../config/load.js')]);
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw bad(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) throw bad(`${file} is empty; it should hold a pool, a list of pools, or {pools: [...]}`);
  const pools: unknown[] = [];
  for (const doc of docs) {
    const e = doc.errors[0];
    if (e) throw bad(`${file}${e.linePos ? ` line ${e.linePos[0].line}, column ${e.linePos[0].col}` : ''}: ${e.message.split('\n')[0]}`);
    const v = doc.toJS() as unknown;
    if (v === null || v === undefined) continue;
    if (Array.isArray(v)) pools.push(...v);
    else if (typeof v === 'object' && 'pools' in v) {
      const inner = (v as { pools: unknown }).pools;
      if (!Array.isArray(inner)) throw bad(`${file}: pools must be a list`);
      const others = Object.keys(v).filter((k) => k !== 'pools');
      if (others.length) process.stderr.write(`note: applying only the pools of ${file}; ${others.join(', ')} ${others.length === 1 ? 'is' : 'are'} server settings, not changed here\n`);
      pools.push(...inner);
    } else pools.push(v);
  }
  if (!pools.length) throw bad(`${file} holds no pools; it should hold a pool, a list of pools, or {pools: [...]}`);
  const seen = new Set<string>();
  pools.forEach((p, i) => {
    if (!p || typeof p !== 'object' || Array.isArray(p)) throw bad(`${file}: pools[${i}] must be a mapping with at least a name`);
    const name = (p as { name?: unknown }).name;
    // The same schema the server applies, checked here so that every wrong field is named.
    const r = poolSchema.safeParse(p);
    if (!r.success) {
      const which = typeof name === 'string' ? `pool ${name}` : `pools[${i}]`;
      throw bad(`${file}: ${which}: ${r.error.issues.map((e) => `${e.path.length ? formatPath(e.path) : '(pool)'}: ${e.message}`).join('; ')}`);
    }
    if (seen.has(r.data.name)) throw bad(`${file}: pool ${r.data.name} appears twice (pools[${i}].name)`);
    seen.add(r.data.name);
  });
  return pools as Record<string, unknown>[];
}

function runnerSummary(byState: Record<string, number> | undefined): string {
  const entries = Object.entries(byState ?? {}).filter(([, n]) => n > 0);
  if (!entries.length) return '0';
  const total = entries.reduce((a, [, n]) => a + n, 0);
  return `${total} (${entries.map(([s, n]) => `${n} ${s}`).join(', ')})`;
}
