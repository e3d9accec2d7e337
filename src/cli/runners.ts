import type { Command } from 'commander';
import { CliError, type ApiClient } from './client.js';
import { age, ageShort, bad, clientOf, hint404, parseEnumList, parsePoolName, printFields, printJson, printTable, truncate, when } from './output.js';

const RUNNER_STATES = ['starting', 'idle', 'busy', 'draining', 'offline', 'disabled', 'terminated'] as const;
const NOT_FOUND_HINT = 'list them with `runyard runners list --all`';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The short form of a runner ID shown in tables; every runner command accepts it back. */
export const shortId = (id: string) => id.slice(0, 8);

export function registerRunners(program: Command): void {
  const runners = program
    .command('runners')
    .description('list and manage runners (a runner is named by its ID, a unique ID prefix, or its name)')
    .addHelpText(
      'after',
      `
Stopping a runner, from gentlest to hardest:
  disable    takes no new jobs; stays alive and registered (enable undoes it)
  drain      takes no new jobs, finishes the running ones, then deregisters and exits; the
             scheduler starts a replacement if the pool needs one
  terminate  drain, and also ends at once a runner that never registered or is offline (the
             provider stops what it started)
  delete     at once: running jobs are killed and go back to the queue; the agent removes its
             state and job dirs
All of them end the runner for good except disable; a drained, terminated or deleted runner
registers as a new runner when its agent starts again.`,
    );

  runners
    .command('list')
    .description('list live runners, newest first')
    .option('-p, --pool <pool>', 'only this pool')
    .option('--state <states>', `only these states, comma-separated (${RUNNER_STATES.join(', ')})`)
    .option('-a, --all', 'include terminated runners')
    .option('--json', 'print the API response as JSON')
    .action(async (opts: { pool?: string; state?: string; all?: boolean; json?: boolean }, cmd: Command) => {
      const q = new URLSearchParams();
      if (parsePoolName(opts.pool, '--pool')) q.set('pool', opts.pool!);
      const states = parseEnumList(opts.state, '--state', RUNNER_STATES);
      if (states) q.set('state', states.join(','));
      if (opts.all || states?.includes('terminated')) q.set('all', '1');
      const r = await clientOf(cmd).request<{ runners: any[] }>('GET', `/api/v1/runners?${q}`);
      if (opts.json) return printJson(r);
      const now = Date.now();
      printTable(
        ['ID', 'NAME', 'POOL', 'STATE', 'JOBS', 'AGE', 'LAST HEARTBEAT'],
        r.runners.map((x) => [shortId(x.id), truncate(x.name, 40), x.pool, x.state, `${x.activeJobs ?? 0}/${x.slots}`, ageShort(x.createdAt, now), age(x.lastHeartbeatAt, now)]),
        opts.pool || states ? 'no runners match' : 'no runners; they start when jobs are queued (or set minIdle on a pool), or run `runyard agent` on a host',
      );
    });

  runners
    .command('show')
    .description('show one runner and the jobs it is running')
    .argument('<runner>', 'runner ID, unique ID prefix, or name')
    .option('--json', 'print {runner, jobs} as JSON')
    .action(async (ref: string, opts: { json?: boolean }, cmd: Command) => {
      const client = clientOf(cmd);
      const id = await resolveRunner(client, ref);
      const { runner: x } = await hint404(client.request<{ runner: any }>('GET', `/api/v1/runners/${id}`), NOT_FOUND_HINT);
      const { jobs } = await client.request<{ jobs: any[] }>('GET', `/api/v1/jobs?runner=${id}&state=claimed,running&limit=1000`);
      if (opts.json) return printJson({ runner: x, jobs });
      printFields([
        ['id', x.id],
        ['name', x.name],
        ['pool', x.pool],
        ['state', x.stateReason ? `${x.state} (${x.stateReason}, ${age(x.stateChangedAt)})` : x.state],
        ['jobs', `${x.activeJobs ?? 0} of ${x.slots} slots${x.ephemeral ? ' (ephemeral)' : ''}; ${x.jobsStarted} started in all`],
        ['running', jobs.map((j) => j.id).join(', ')],
        ['version', x.version],
        ['labels', (x.labels ?? []).join(', ')],
        ['provider', x.provider ? `${x.provider}${x.providerRef ? ` (${x.providerRef})` : ''}` : undefined],
        ['image', x.image ? `${x.image} (dynamic base)` : undefined],
        ['config hash', x.configHash],
        ['created', when(x.createdAt)],
        ['registered', when(x.registeredAt)],
        ['last heartbeat', when(x.lastHeartbeatAt)],
        ['idle since', x.state === 'idle' ? when(x.idleSince) : undefined],
        ['terminated', when(x.terminatedAt)],
      ]);
    });

  const action = (name: string, description: string, done: string) =>
    runners
      .command(name)
      .description(description)
      .argument('<runner>', 'runner ID, unique ID prefix, or name')
      .option('--json', 'print the runner as JSON')
      .action(async (ref: string, opts: { json?: boolean }, cmd: Command) => {
        const client = clientOf(cmd);
        const id = await resolveRunner(client, ref);
        const r = await hint404(client.request<{ runner: any }>('POST', `/api/v1/runners/${id}/${name}`), NOT_FOUND_HINT);
        if (opts.json) return printJson(r);
        process.stdout.write(`runner ${r.runner.name} (${shortId(id)}) ${done}; now ${r.runner.state}\n`);
      });
  action('terminate', 'end a runner: like drain, and a runner that never registered or is offline ends at once', 'will stop after its running jobs');
  action('drain', 'let a runner finish its running jobs, take no new ones, then deregister and exit (it is replaced if its pool needs it)', 'is draining');
  action('disable', 'stop a runner taking new jobs; it stays alive and registered (undo with enable)', 'is disabled');
  action('enable', 'let a disabled runner take jobs again', 'is enabled');

  runners
    .command('delete')
    .description('stop a runner at once: its running jobs are killed and go back to the queue; its agent removes its state and job dirs')
    .argument('<runner>', 'runner ID, unique ID prefix, or name')
    .option('--json', 'print the runner as JSON')
    .action(async (ref: string, opts: { json?: boolean }, cmd: Command) => {
      const client = clientOf(cmd);
      const id = await resolveRunner(client, ref);
      const r = await hint404(client.request<{ runner: any }>('DELETE', `/api/v1/runners/${id}`), NOT_FOUND_HINT);
      if (opts.json) return printJson(r);
      process.stdout.write(`runner ${r.runner.name} (${shortId(id)}) deleted; its jobs went back to the queue\n`);
    });
}

/** A full ID is used as is; a prefix or a name is looked up among all runners (terminated too). */
export async function resolveRunner(client: ApiClient, ref: string): Promise<string> {
  if (!ref.trim()) throw bad('runner must be an ID, an ID prefix or a name');
  if (UUID.test(ref)) return ref.toLowerCase();
  const { runners } = await client.request<{ runners: { id: string; name: string; state: string }[] }>('GET', '/api/v1/runners?all=1&limit=5000');
  const lower = ref.toLowerCase();
  const byName = runners.filter((r) => r.name === ref);
  const live = byName.filter((r) => r.state !== 'terminated');
  // a name reused by a replacement runner means the live one
  const named = live.length ? live : byName;
  const matches = named.length ? named : /^[0-9a-f-]+$/.test(lower) ? runners.filter((r) => r.id.startsWith(lower)) : [];
  if (matches.length === 1) return matches[0]!.id;
  if (!matches.length) throw new CliError(`error: no runner with ID or name ${JSON.stringify(ref)}\nhint: ${NOT_FOUND_HINT}`, 1);
  throw bad(`${JSON.stringify(ref)} matches ${matches.length} runners (${matches.slice(0, 5).map((r) => shortId(r.id)).join(', ')}${matches.length > 5 ? ', …' : ''}); give more of the ID`);
}
