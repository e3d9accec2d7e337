import { Command, CommanderError } from 'commander';
import { registerUp } from '../cli/up.js';
import { registerCommands } from '../cli/commands.js';
import { registerAgent } from '../cli/agent.js';
import { CliError } from '../cli/client.js';
import { VERSION } from '../version.js';

const program = new Command();
program
  .name('runyard')
  .description('runyard: a self-hosted runner fleet')
  .version(VERSION)
  .option('--server <url>', 'runyard server URL (env RUNYARD_SERVER; found automatically next to `runyard up`)')
  .option('--token <token>', 'API token (env RUNYARD_TOKEN; the admin token is found automatically next to `runyard up`)')
  .exitOverride()
  .configureOutput({ outputError: (s, write) => write(s) });

registerUp(program);
registerAgent(program);
registerCommands(program);

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
