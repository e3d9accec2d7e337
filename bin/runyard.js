#!/usr/bin/env node
// `runyard agent` starts every runner: it loads only what the agent needs, bundled into one file
// by the build (scripts/bundle-agent-entry.mjs) and run with its code cache (bin/agent-bundle.js),
// for a fast cold start. A bundle older than the
// compiled agent (a tsc-only rebuild) is not used.
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

if (process.argv[2] === 'agent') {
  const bundle = new URL('../dist/agent.cjs', import.meta.url);
  const entry = new URL('../dist/bin/agent-cli.js', import.meta.url);
  const mtime = (u) => statSync(u, { throwIfNoEntry: false })?.mtimeMs ?? 0;
  if (mtime(bundle) >= mtime(entry)) (await import('./agent-bundle.js')).runBundle(fileURLToPath(bundle));
  else await import(entry.href);
} else await import('../dist/bin/cli.js');
