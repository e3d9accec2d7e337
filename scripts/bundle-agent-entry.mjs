// Bundles `runyard agent` (dist/bin/agent-cli.js and what it imports) into dist/agent.mjs, which
// bin/runyard.js loads when present: one file to read and link instead of a few hundred modules,
// which takes ~40 ms off every runner's start (see BENCHMARKS.md, scale from zero). Run after tsc.
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/bin/agent-cli.js'],
  outfile: 'dist/agent.mjs',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // Some dependencies are CommonJS and call require() for Node's own modules.
  banner: { js: "import { createRequire as __runyardRequire } from 'node:module'; const require = __runyardRequire(import.meta.url);" },
  logLevel: 'warning',
});
