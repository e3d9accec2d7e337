import { registerUp } from '../cli/up.js';
import { registerCommands } from '../cli/commands.js';
import { registerAgent } from '../cli/agent.js';
import { registerSimulate } from '../cli/simulate.js';
import { baseProgram, run } from './program.js';

const program = baseProgram();
registerUp(program);
registerAgent(program);
registerCommands(program);
registerSimulate(program);
await run(program);
