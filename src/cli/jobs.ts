import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { ApiClient } from './client.js';
import { exitFor, followLogs, readAllLogs, writeLine, type JobEnd, type LogLine } from './logs.js';
import {
  ageShort,
  bad,
  change,
  clientOf,
  collect,
  formatMs,
  hint404,
  parseDurationArg,
  parseEnumList,
  parseJobId,
  parseKeyValues,
  parsePoolName,
  parsePositiveInt,
  printFields,
  printJson,
  printTable,
  truncate,
  when,
} from './output.js';

const JOB_STATES = ['queued', 'claimed', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;
const NOT_FOUND_HINT = 'list jobs with `runyard jobs list`';

interface SubmitOptions {
  pool?: string;
  cmd?: string[];
  payload?: string;
  env?: string[];
  secret?: string[];
  label?: string[];
  image?: string;
  cpu?: string;
  memoryMb?: string;
  timeout?: string;
  maxAttempts?: string;
  retryOnFailure?: boolean;
  idempotencyKey?: string;
  wait?: boolean;
  json?: boolean;
}

export function registerJobs(program: Command): void {
  // positional: lets `submit` hand every word after the command's first to the command
  const jobs = program.command('jobs').description('submit, list, inspect and cancel jobs').enablePositionalOptions();

  jobs
    .command('submit')
    .description('submit a job; its shell command comes last: everything from its first word (or after --) belongs to it')
    .argument('[command...]', 'the shell command (one argument is used as is; several are joined with spaces, quoting those that contain spaces)')
    // `jobs submit --wait ls -la`: options stop at the command's first word, so -la is ls's
    .passThroughOptions()
    .option('-p, --pool <pool>', 'pool to run on (default: local, or the only pool)')
    .option('-c, --cmd <command>', 'a shell command; repeat for several commands run in order (instead of -- CMD)', collect)
    .option('--payload <file.json>', 'JSON payload, handed to the job as the file $RUNYARD_PAYLOAD ("-" reads stdin)')
    .option('-e, --env <NAME=VALUE>', 'environment variable for the job; repeatable', collect)
    .option('-s, --secret <NAME[=VALUE]>', 'secret environment variable, encrypted to the runner; without =VALUE it is read from your environment; repeatable', collect)
    .option('-l, --label <label>', 'label for the job; repeatable', collect)
    .option('--image <image>', "base image to run on (container pools that allow dynamic images; default: the pool's image)")
    .option('--cpu <n>', 'CPUs the job needs; refused at submit when no class size (or not the pool\'s class) offers them')
    .option('--memory-mb <n>', 'memory in MB the job needs; refused at submit like --cpu')
    .option('--timeout <duration>', "job time limit with a unit: 90s, 10m, 1h, 1h30m (a bare number is refused; default: the pool's jobTimeout)")
    .option('--max-attempts <n>', 'attempts when its runner is lost (default 3)')
    .option('--retry-on-failure', 'also retry when the command exits non-zero')
    .option('--idempotency-key <key>', 'submitting the same key again returns the existing job')
    .option('-w, --wait', "follow the logs and exit with the job's exit code")
    .option('--json', 'print the job as JSON (with --wait: logs go to stderr and the finished job is printed)')
    .addHelpText('after', '\nExamples:\n  runyard jobs submit -- make test\n  runyard jobs submit --wait ls -la           (options end at the first word of the command)\n  runyard jobs submit --pool ci --env CI=1 --wait -- "npm ci && npm test"\n  runyard jobs submit -c "make build" -c "make test" --payload params.json')
    .action(async (args: string[], opts: SubmitOptions, cmd: Command) => {
      const spec = buildSpec(args, opts);
      const client = clientOf(cmd);
      const r = await client.request<{ job: any; created: boolean }>('POST', '/api/v1/jobs', spec);
      const job = r.job;
      if (!r.created) process.stderr.write(`note: job ${job.id} already exists with idempotency key ${JSON.stringify(opts.idempotencyKey)} (${job.state}); not submitted again\n`);
      if (!opts.wait) {
        if (opts.json) printJson(r);
        else process.stdout.write(`${job.id}\n`);
        return;
      }
      if (process.stderr.isTTY) process.stderr.write(`job ${job.id} queued in pool ${job.pool}; following its logs (Ctrl-C stops following; the job keeps running)\n`);
      await waitForJob(client, job.id, !!opts.json);
    });

  jobs
    .command('list')
    .description('list jobs, newest first')
    .option('--state <states>', `only these states, comma-separated (${JOB_STATES.join(', ')})`)
    .option('-p, --pool <pool>', 'only this pool')
    .option('--runner <id>', 'only jobs of this runner (UUID)')
    .option('-n, --limit <n>', 'how many (1-1000, default 50)')
    .option('--before <id>', 'page: jobs older than this job ID')
    .option('--json', 'print the API response as JSON')
    .action(async (opts: { state?: string; pool?: string; runner?: string; limit?: string; before?: string; json?: boolean }, cmd: Command) => {
      const q = new URLSearchParams();
      const states = parseEnumList(opts.state, '--state', JOB_STATES);
      if (states) q.set('state', states.join(','));
      if (parsePoolName(opts.pool, '--pool')) q.set('pool', opts.pool!);
      if (opts.runner !== undefined) {
        if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(opts.runner)) throw bad(`--runner must be a runner ID (UUID), got ${JSON.stringify(opts.runner)}`);
        q.set('runner', opts.runner);
      }
      q.set('limit', String(parsePositiveInt(opts.limit, '--limit', 1000) ?? 50));
      if (opts.before !== undefined) q.set('before', String(parseJobId(opts.before)));
      const r = await clientOf(cmd).request<{ jobs: any[]; nextBefore: number | null }>('GET', `/api/v1/jobs?${q}`);
      if (opts.json) return printJson(r);
      const now = Date.now();
      printTable(
        ['ID', 'STATE', 'POOL', 'ATTEMPT', 'EXIT', 'AGE', 'DURATION', 'COMMAND'],
        r.jobs.map((j) => [j.id, j.state, j.pool, `${j.attempt}/${j.maxAttempts}`, j.exitCode, ageShort(j.createdAt, now), runTime(j, now), truncate(j.commands.join(' && '), 60)]),
        states || opts.pool || opts.runner || opts.before ? 'no jobs match' : 'no jobs yet; submit one with `runyard jobs submit -- CMD`',
      );
      if (r.nextBefore) process.stderr.write(`more: runyard jobs list --before ${r.nextBefore}\n`);
    });

  jobs
    .command('show')
    .description('show a job and its timeline')
    .argument('<id>', 'job ID')
    .option('--json', 'print {job, events} as JSON')
    .action(async (rawId: string, opts: { json?: boolean }, cmd: Command) => {
      const id = parseJobId(rawId);
      const client = clientOf(cmd);
      const { job } = await hint404(client.request<{ job: any }>('GET', `/api/v1/jobs/${id}`), NOT_FOUND_HINT);
      const { events } = await client.request<{ events: any[] }>('GET', `/api/v1/jobs/${id}/events`);
      if (opts.json) return printJson({ job, events });
      printFields([
        ['id', job.id],
        ['state', job.state],
        ['pool', job.pool],
        ['commands', job.commands.length === 1 ? job.commands[0] : '\n' + job.commands.map((c: string) => `  - ${c}`).join('\n')],
        ['attempt', `${job.attempt} of ${job.maxAttempts}${job.retryOnFailure ? ' (retried on failure)' : ''}`],
        ['runner', job.runnerId],
        ['exit code', job.exitCode],
        ['error', job.error],
        ['waiting', job.waitingReason],
        ['cancel', job.cancelRequested && !['cancelled', 'succeeded', 'failed', 'timed_out'].includes(job.state) ? 'requested' : undefined],
        ['timeout', formatMs(job.timeoutMs)],
        ['env', Object.keys(job.env ?? {}).join(', ')],
        ['secrets', (job.secretNames ?? []).join(', ')],
        ['labels', (job.labels ?? []).join(', ')],
        ['image', job.image],
        ['source', job.source],
        ['idempotency key', job.idempotencyKey],
        ['payload', job.payload !== null && job.payload !== undefined ? truncate(JSON.stringify(job.payload), 200) : undefined],
        ['output', job.output !== null && job.output !== undefined ? truncate(JSON.stringify(job.output), 200) : undefined],
        ['created', when(job.createdAt)],
        ['started', when(job.startedAt)],
        ['finished', when(job.finishedAt)],
        ['duration', runTime(job, Date.now())],
      ]);
      process.stdout.write('\nevents:\n');
      printTable(
        ['TIME', 'CHANGE', 'REASON', 'BY'],
        events.map((e) => [new Date(e.at).toISOString(), change(e), e.reason, e.actor]),
        '  (none)',
      );
    });

  jobs
    .command('logs')
    .description("print a job's logs (stdout lines to stdout, stderr and runner lines to stderr)")
    .argument('<id>', 'job ID')
    .option('-f, --follow', "follow until the job ends, then exit with the job's exit code")
    .option('--json', 'print the lines as JSON ({jobId, state, finished, lines}; with -f one JSON object per line)')
    .action(async (rawId: string, opts: { follow?: boolean; json?: boolean }, cmd: Command) => {
      const id = parseJobId(rawId);
      const client = clientOf(cmd);
      if (opts.follow) {
        const end = await hint404(
          followLogs(client, id, {
            onLine: opts.json ? (l) => process.stdout.write(JSON.stringify(l) + '\n') : (l) => writeLine(l),
            onReconnect: (after, why) => process.stderr.write(`[runyard] log stream interrupted (${why}); resuming after line batch ${after}\n`),
            onWaiting: printWaiting,
          }),
          NOT_FOUND_HINT,
        );
        if (opts.json) process.stdout.write(JSON.stringify({ end }) + '\n');
        return finish(id, end);
      }
      const lines: LogLine[] = [];
      const r = await hint404(readAllLogs(client, id, opts.json ? (l) => lines.push(l) : (l) => writeLine(l)), NOT_FOUND_HINT);
      if (opts.json) return printJson({ jobId: id, state: r.state, finished: r.finished, lines });
      if (!r.finished) process.stderr.write(`[runyard] job ${id} is ${r.state}; follow it with \`runyard jobs logs -f ${id}\`\n`);
    });

  jobs
    .command('cancel')
    .description('cancel a job (a running job is stopped by its runner)')
    .argument('<id>', 'job ID')
    .option('--json', 'print the job as JSON')
    .action(async (rawId: string, opts: { json?: boolean }, cmd: Command) => {
      const id = parseJobId(rawId);
      const { job } = await hint404(clientOf(cmd).request<{ job: any }>('POST', `/api/v1/jobs/${id}/cancel`), NOT_FOUND_HINT);
      if (opts.json) return printJson({ job });
      if (job.state === 'cancelled') process.stdout.write(`job ${id} cancelled\n`);
      else process.stdout.write(`cancel requested for job ${id} (${job.state} on runner ${job.runnerId}); its runner stops it\n`);
    });

  jobs
    .command('retry')
    .description('queue a failed, cancelled or timed-out job again')
    .argument('<id>', 'job ID')
    .option('--json', 'print the job as JSON')
    .action(async (rawId: string, opts: { json?: boolean }, cmd: Command) => {
      const id = parseJobId(rawId);
      const { job } = await hint404(clientOf(cmd).request<{ job: any }>('POST', `/api/v1/jobs/${id}/retry`), NOT_FOUND_HINT);
      if (opts.json) return printJson({ job });
      process.stdout.write(`job ${id} queued again in pool ${job.pool} (attempts used ${job.attempt} of ${job.maxAttempts})\n`);
    });
}

/** The request body for POST /api/v1/jobs, from the arguments; bad input fails here with exit 2. */
export function buildSpec(args: string[], opts: SubmitOptions): Record<string, unknown> {
  if (args.length && opts.cmd?.length) throw bad('give the command either after -- or with --cmd, not both');
  if (!args.length && !opts.cmd?.length) throw bad('no command given; put it after --, e.g. `runyard jobs submit -- make test`');
  const commands = opts.cmd?.length ? opts.cmd : [joinCommand(args)];
  if (commands.some((c) => !c.trim())) throw bad('the command is empty');
  const spec: Record<string, unknown> = commands.length === 1 ? { command: commands[0] } : { commands };
  if (opts.pool !== undefined) spec.pool = parsePoolName(opts.pool, '--pool');
  if (opts.payload !== undefined) spec.payload = readPayload(opts.payload);
  const env = parseKeyValues(opts.env, '--env');
  if (env) spec.env = env;
  const secrets = parseSecrets(opts.secret);
  if (secrets) spec.secrets = secrets;
  if (opts.label?.length) {
    if (opts.label.some((l) => !l.trim() || l.length > 128)) throw bad('--label must be 1 to 128 characters');
    spec.labels = opts.label;
  }
  if (opts.image !== undefined) spec.image = opts.image;
  if (opts.cpu !== undefined) {
    const cpu = Number(opts.cpu);
    if (!opts.cpu.trim() || !Number.isFinite(cpu) || cpu <= 0 || cpu > 1024) throw bad(`--cpu must be a number of CPUs above 0 (e.g. 0.5 or 2), not ${JSON.stringify(opts.cpu)}`);
    spec.cpu = cpu;
  }
  if (opts.memoryMb !== undefined) spec.memoryMb = parsePositiveInt(opts.memoryMb, '--memory-mb', 4_194_304);
  if (opts.timeout !== undefined) spec.timeout = parseDurationArg(opts.timeout, '--timeout');
  if (opts.maxAttempts !== undefined) spec.maxAttempts = parsePositiveInt(opts.maxAttempts, '--max-attempts', 100);
  if (opts.retryOnFailure) spec.retryOnFailure = true;
  if (opts.idempotencyKey !== undefined) {
    if (!opts.idempotencyKey || opts.idempotencyKey.length > 200) throw bad('--idempotency-key must be 1 to 200 characters');
    spec.idempotencyKey = opts.idempotencyKey;
  }
  return spec;
}

/**
 * One argument is the shell command as written (`-- "make && make test"`). Several are joined
 * with spaces; an argument containing whitespace is single-quoted so that it stays one word
 * (`-- sh -c "echo a; echo b"`).
 */
export function joinCommand(args: string[]): string {
  if (args.length === 1) return args[0]!;
  return args.map((a) => (a === '' || /\s/.test(a) ? `'${a.replace(/'/g, `'\\''`)}'` : a)).join(' ');
}

function readPayload(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw bad(`--payload: cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw bad(`--payload: ${file} is not valid JSON (${(err as Error).message})`);
  }
}

/** `NAME=VALUE`, or `NAME` alone to take the value from this environment (keeps it out of `ps`). */
function parseSecrets(pairs: string[] | undefined): Record<string, string> | undefined {
  if (!pairs?.length) return undefined;
  const withValues = pairs.map((p) => {
    if (p.includes('=')) return p;
    const v = process.env[p];
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(p) && v === undefined) throw bad(`--secret ${p}: give NAME=VALUE, or set the environment variable ${p}`);
    return `${p}=${v ?? ''}`;
  });
  return parseKeyValues(withValues, '--secret');
}

/** Follows a submitted job to its end and sets the process exit code to the job's. */
async function waitForJob(client: ApiClient, id: number, json: boolean): Promise<void> {
  const onSigint = () => {
    process.stderr.write(`\n[runyard] stopped following job ${id}; it keeps running (cancel it with \`runyard jobs cancel ${id}\`)\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSigint);
  try {
    const end = await followLogs(client, id, {
      // With --json, stdout carries only the final job, so every log line goes to stderr.
      onLine: json ? (l) => writeLine(l, { stdout: process.stderr, stderr: process.stderr }) : (l) => writeLine(l),
      onReconnect: (after, why) => process.stderr.write(`[runyard] log stream interrupted (${why}); resuming after line batch ${after}\n`),
      onWaiting: printWaiting,
    });
    if (json) printJson(await client.request('GET', `/api/v1/jobs/${id}`));
    finish(id, end);
  } finally {
    process.off('SIGINT', onSigint);
  }
}

const printWaiting = (reason: string) => process.stderr.write(`[runyard] waiting: ${reason}\n`);

/** Exit with the job's code; a note on stderr says why when it is not 0. */
function finish(id: number, end: JobEnd): void {
  const { code, note } = exitFor(id, end);
  if (note) process.stderr.write(`runyard: ${note}\n`);
  process.exitCode = code;
}

function runTime(j: { startedAt: string | null; finishedAt: string | null }, now: number): string | undefined {
  if (!j.startedAt) return undefined;
  const ms = (j.finishedAt ? new Date(j.finishedAt).getTime() : now) - new Date(j.startedAt).getTime();
  if (ms < 1000) return `${Math.max(0, ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m${Math.floor((ms % 60_000) / 1000)}s`;
  return `${Math.floor(ms / 3_600_000)}h${Math.floor((ms % 3_600_000) / 60_000)}m`;
}
