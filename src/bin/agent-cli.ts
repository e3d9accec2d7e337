/*
 * `runyard agent` alone: every runner starts through here, so it loads only the agent, not the
 * server, the config schema or the user commands (see bin/runyard.js).
 */
import { registerAgent } from '../cli/agent.js';
import { baseProgram, run } from './program.js';

const program = baseProgram();
registerAgent(program);
// not awaited: the bundle of this entry is CommonJS (no top-level await); run() handles every error
void run(program);
