import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Agent, type AgentOptions } from '../agent/agent.js';
import { isUuid } from '../agent/identity.js';
import { parseDuration } from '../lib/duration.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { CliError, resolveConnection } from './client.js';
import { durationMsArg } from './output.js';

/** `runyard agent`: a runner, for hosts the control plane does not start itself. */
export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('run a runner agent: register with a server, take jobs of its pool and run them')
    .option('--server <url>', 'runyard server URL (env RUNYARD_SERVER; default: the local `runyard up`, else http://127.0.0.1:8080)')
    .option('--token <token>', 'registration token from `runyard tokens create --pool P` (env RUNYARD_REGISTRATION_TOKEN; prefer the env var: arguments are visible in ps)')
    .option('--state-dir <dir>', 'where the runner keeps its identity and caches (env RUNYARD_STATE_DIR; default ~/.runyard-agent)')
    .option('--work-dir <dir>', 'where job working directories are created (env RUNYARD_WORK_DIR; default <state-dir>/work)')
    .option('--name <name>', 'runner name shown in listings (env RUNYARD_RUNNER_NAME; default <hostname>-<short id>)')
    .option('--labels <a,b>', 'comma-separated labels this runner advertises (env RUNYARD_RUNNER_LABELS)')
    .option('--id <uuid>', 'use this runner id instead of the one kept in the state dir (env RUNYARD_RUNNER_ID; set by providers)')
    .option('--health-port <port>', 'serve GET /livez and /readyz on this port, 0 for any free port (env RUNYARD_HEALTH_PORT; default: off)')
    .option('--health-host <host>', 'address the health server binds (env RUNYARD_HEALTH_HOST; default 127.0.0.1, 0.0.0.0 for probes from other hosts)')
    .option('--pass-env <names>', 'comma-separated names from the agent\'s environment that jobs also get, NAME or PREFIX* (env RUNYARD_PASS_ENV; default: only PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE, LC_*, TZ, TMPDIR)')
    .option('--grace-period <duration>', 'SIGTERM-to-SIGKILL grace for cancelled/timed-out jobs, and how long a SIGTERM waits for running jobs (env RUNYARD_GRACE_PERIOD; default 10s)')
    .addHelpText(
      'after',
      `
Jobs run with /bin/sh in a fresh directory per job; their commands share one shell and stop at
the first that exits non-zero. The job sees RUNYARD_PAYLOAD, RUNYARD_OUTPUT, RUNYARD_JOB_ID,
RUNYARD_WORKDIR and RUNYARD_SETUP_DIR, plus the pool's and job's env and decrypted secrets, and of
the agent's own environment only PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE, LC_*, TZ,
TMPDIR and what --pass-env names (never RUNYARD_*).

Signals: SIGTERM/SIGINT (Ctrl-C) drain: finish running jobs, then exit 0. The runner goes
offline and keeps its UUID and key in the state dir, so the next start is the same runner
(with --id, as providers start it, it deregisters instead). A second signal, or the grace period
running out, kills the jobs. \`runyard runners drain ID\` and ephemeral runners deregister
for good; \`runyard runners delete ID\` also removes the state dir.
Logs: readable lines when stderr is a terminal, JSON lines otherwise (RUNYARD_LOG_LEVEL,
RUNYARD_LOG_FORMAT=json|pretty).`,
    )
    .action(async (_opts, cmd: Command) => {
      const opts = resolveAgentOptions(cmd.optsWithGlobals(), process.env);
      // Read once, then out of the environment: nothing the agent starts inherits it. (On Linux
      // /proc/<pid>/environ keeps the start-up copy; a launch token is spent at registration.)
      delete process.env.RUNYARD_REGISTRATION_TOKEN;
      const log = createLogger({ name: 'runyard-agent' });
      const agent = new Agent({ ...opts, log });
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        signals++;
        log.info({ signal: sig, count: signals }, signals === 1 ? 'signal received: draining' : 'signal received again: killing jobs');
        // a hand-started agent keeps its identity across Ctrl-C; provider-started ones (--id) deregister
        if (signals === 1) void agent.close({ keepIdentity: opts.id === undefined });
        else agent.forceStop();
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      const exit = await agent.done;
      if (exit.code !== 0) process.stderr.write(`runyard agent: ${exit.reason}\n`);
      await flush(log);
      process.exit(exit.code);
    });
}

type Raw = Record<string, string | undefined>;

/** Validates options and env once; a bad value is a CliError (exit 2) naming the option. */
export function resolveAgentOptions(flags: Raw, env: NodeJS.ProcessEnv): Omit<AgentOptions, 'log'> {
  const pick = (flag: string, name: string) => flags[flag] ?? (env[name] || undefined);
  const server = resolveConnection({ server: pick('server', 'RUNYARD_SERVER') }).server;
  if (!/^https?:\/\/[^/\s]+/.test(server)) throw new CliError(`error: --server must be an http(s) URL, got ${JSON.stringify(server)}`, 2);

  const token = pick('token', 'RUNYARD_REGISTRATION_TOKEN');
  if (!token) throw new CliError('error: --token is required: a registration token from `runyard tokens create --pool <pool>` (or set RUNYARD_REGISTRATION_TOKEN)', 2);

  const stateDir = pick('stateDir', 'RUNYARD_STATE_DIR') ?? join(homedir(), '.runyard-agent');
  const workDir = pick('workDir', 'RUNYARD_WORK_DIR') ?? join(stateDir, 'work');

  const name = pick('name', 'RUNYARD_RUNNER_NAME');
  if (name !== undefined && (name.trim().length === 0 || name.length > 200)) throw new CliError('error: --name must be 1-200 characters', 2);

  const labelText = pick('labels', 'RUNYARD_RUNNER_LABELS');
  const labels = labelText ? labelText.split(',').map((l) => l.trim()).filter(Boolean) : [];
  if (labels.length > 64 || labels.some((l) => l.length > 128)) throw new CliError('error: --labels takes at most 64 labels of at most 128 characters', 2);

  const id = pick('id', 'RUNYARD_RUNNER_ID');
  if (id !== undefined && !isUuid(id)) throw new CliError(`error: --id must be a UUID, got ${JSON.stringify(id)}`, 2);

  let healthPort: number | undefined;
  const portText = pick('healthPort', 'RUNYARD_HEALTH_PORT');
  if (portText !== undefined) {
    healthPort = /^\d+$/.test(portText) ? Number(portText) : NaN;
    if (!Number.isInteger(healthPort) || healthPort < 0 || healthPort > 65535) throw new CliError(`error: --health-port must be a port number (0-65535), got ${JSON.stringify(portText)}`, 2);
  }

  // the flag needs a unit like every CLI duration; the env var keeps the config's forms (ms)
  const graceFlag = flags.gracePeriod;
  const graceText = graceFlag ?? (env.RUNYARD_GRACE_PERIOD || '10s');
  const gracePeriodMs = graceFlag !== undefined ? durationMsArg(graceFlag, '--grace-period', 0) : parseDuration(graceText);
  if (gracePeriodMs === undefined) throw new CliError(`error: RUNYARD_GRACE_PERIOD must be a duration such as 10s, 1m or 500ms, got ${JSON.stringify(graceText)}`, 2);

  const passText = pick('passEnv', 'RUNYARD_PASS_ENV');
  const passEnv = passText ? passText.split(',').map((n) => n.trim()).filter(Boolean) : [];
  const badName = passEnv.find((n) => !/^([A-Za-z_][A-Za-z0-9_]*\*?|\*)$/.test(n));
  if (badName !== undefined) throw new CliError(`error: --pass-env takes variable names, prefixes ending in * or * alone (everything), got ${JSON.stringify(badName)}`, 2);

  return { server, registrationToken: token, stateDir, workDir, name, labels, id, healthPort, healthHost: pick('healthHost', 'RUNYARD_HEALTH_HOST'), gracePeriodMs, passEnv };
}

function flush(log: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      log.flush(() => resolve());
    } catch {
      resolve();
    }
  });
}
