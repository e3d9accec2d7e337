// Bundles `runyard agent` (dist/bin/agent-cli.js and what it imports) into dist/agent.cjs, which
// bin/runyard.js runs when present: one file to read and link instead of a few hundred modules,
// which takes ~40 ms off every runner's start (see BENCHMARKS.md, scale from zero). Run after tsc.
// CommonJS so that it can be compiled with a V8 code cache (dist/agent.cache, made here by a
// `runyard agent --help` of the bundle): the ~0.6 MB are then not compiled again at each start.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { build } from 'esbuild';
import { CACHE_ENV } from '../bin/agent-bundle.js';

rmSync('dist/agent.mjs', { force: true }); // the earlier ESM bundle
rmSync('dist/agent.cache', { force: true });
await build({
  entryPoints: ['dist/bin/agent-cli.js'],
  outfile: 'dist/agent.cjs',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // the modules' import.meta.url (package.json next to dist/, createRequire) is the bundle's own URL
  define: { 'import.meta.url': '__runyardUrl' },
  banner: { js: "const __runyardUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});
// The cache holds what V8 compiled while the bundle loaded and parsed `agent --help`.
const r = spawnSync(process.execPath, ['bin/runyard.js', 'agent', '--help'], { env: { ...process.env, [CACHE_ENV]: 'write' }, stdio: ['ignore', 'ignore', 'inherit'] });
if (r.status !== 0) throw new Error(`making the agent's code cache failed (exit ${r.status})`);
