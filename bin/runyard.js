#!/usr/bin/env node
// `runyard agent` starts every runner: it loads only what the agent needs, for a fast cold start.
if (process.argv[2] === 'agent') await import('../dist/bin/agent-cli.js');
else await import('../dist/bin/cli.js');
