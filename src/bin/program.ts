import { Command, CommanderError } from 'commander';
import { CliError } from '../cli/client.js';
import { VERSION } from '../version.js';

/** The `runyard` program with its global options, before any command is added. */
export function baseProgram(): Command {
  return new Command()
    .name('runyard')
    .description('runyard: a self-hosted runner fleet')
    .version(VERSION)
    .option('--server <url>', 'runyard server URL (env RUNYARD_SERVER; found automatically next to `runyard up`)')
    .option('--token <token>', 'API token (env RUNYARD_TOKEN; the admin token is found automatically next to `runyard up`)')
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s) });
}

/** Parses the arguments and runs the command; exit codes: 0 ok, 2 bad usage, 1 anything else. */
export async function run(program: Command): Promise<void> {
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
