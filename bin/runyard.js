#!/usr/bin/env node
// `runyard agent` starts every runner: it loads only what the agent needs, bundled into one file
// by the build (scripts/bundle-agent-entry.mjs), for a fast cold start. A bundle older than the
// compiled agent (a tsc-only rebuild) is not used.
import { statSync } from 'node:fs';

if (process.argv[2] === 'agent') {
  const bundle = new URL('../dist/agent.mjs', import.meta.url);
  const entry = new URL('../dist/bin/agent-cli.js', import.meta.url);
  const mtime = (u) => statSync(u, { throwIfNoEntry: false })?.mtimeMs ?? 0;
  await import(mtime(bundle) >= mtime(entry) ? bundle.href : entry.href);
} else await import('../dist/bin/cli.js');
