import type { Command } from 'commander';
import { registerJobs } from './jobs.js';
import { registerRunners } from './runners.js';
import { registerPools } from './pools.js';
import { registerClassSizes } from './class-sizes.js';
import { registerTokens } from './tokens.js';
import { registerArtifacts } from './artifacts.js';
import { registerEvents } from './events.js';
import { registerImage } from './image.js';

/** Client commands (jobs, runners, pools, tokens, …) talking to the server over HTTP. */
export function registerCommands(program: Command): void {
  registerJobs(program);
  registerRunners(program);
  registerPools(program);
  registerClassSizes(program);
  registerTokens(program);
  registerArtifacts(program);
  registerEvents(program);
  registerImage(program);
}
