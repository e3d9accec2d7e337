import { Command, CommanderError, Option } from 'commander';
import { CliError } from '../cli/client.js';
import { VERSION } from '../version.js';

/** The `runyard` program with its global options, before any command is added. */
export function baseProgram(): Command {
  return new Command()
    .name('runyard')
    .description('runyard: a self-hosted runner fleet')
    .version(VERSION)
    // Options of `runyard` itself only before the command: `jobs submit echo --version` is a
    // command for the job, not a request for runyard's version.
    .enablePositionalOptions()
    .option('--server <url>', 'runyard server URL (env RUNYARD_SERVER; found automatically next to `runyard up`)')
    .option('--token <token>', 'API token (env RUNYARD_TOKEN; the admin token is found automatically next to `runyard up`)')
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s) });
}

/**
 * With positional options the root no longer sees `--server` / `--token` after a command
 * (`runyard jobs list --server URL`), so every command that lacks them gets them, hidden;
 * `optsWithGlobals()` merges them as before.
 */
function globalOptionsEverywhere(cmd: Command): void {
  for (const sub of cmd.commands) {
    if (!sub.commands.length) {
      for (const [flags, name] of [['--server <url>', 'server'], ['--token <token>', 'token']] as const) {
        if (!sub.options.some((o) => o.attributeName() === name)) sub.addOption(new Option(flags).hideHelp());
      }
    }
    globalOptionsEverywhere(sub);
  }
}

/** Parses the arguments and runs the command; exit codes: 0 ok, 2 bad usage, 1 anything else. */
export async function run(program: Command): Promise<void> {
  globalOptionsEverywhere(program);
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(err.message + '\n');
      process.exit(err.exitCode);
    }
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) process.exit(0);
      process.exit(2); // usage errors: commander already printed what is wrong
    }
    process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
