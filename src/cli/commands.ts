import type { Command } from 'commander';

/** Client commands (jobs, runners, pools, tokens, …) talking to the server over HTTP. */
export function registerCommands(program: Command): void {
  void program;
}
