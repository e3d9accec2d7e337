import type { Command } from 'commander';

/** `runyard agent`: a runner. */
export function registerAgent(program: Command): void {
  program.command('agent').description('run a runner agent (not yet implemented)');
}
