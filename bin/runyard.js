#!/usr/bin/env node
// `runyard agent` starts every runner: it loads only what the agent needs, bundled into one file
// by the build where that exists (scripts/bundle-agent-entry.mjs), for a fast cold start.
import { existsSync } from 'node:fs';

if (process.argv[2] === 'agent') {
  const bundle = new URL('../dist/agent.mjs', import.meta.url);
  await import(existsSync(bundle) ? bundle.href : '../dist/bin/agent-cli.js');
} else await import('../dist/bin/cli.js');
