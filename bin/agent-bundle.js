// Runs the agent bundle (dist/agent.cjs, scripts/bundle-agent-entry.mjs) with its V8 code cache
// (dist/agent.cache): compiled from the cache, the bundle starts without parsing ~0.6 MB again.
// A cache of another Node version is rejected by V8 and the bundle compiled as usual.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';

/** Set to `write` by the build: the cache is written when the process exits. */
export const CACHE_ENV = 'RUNYARD_AGENT_CODE_CACHE';

export function runBundle(file) {
  const cacheFile = file.replace(/\.cjs$/, '.cache');
  const write = process.env[CACHE_ENV] === 'write';
  delete process.env[CACHE_ENV];
  let cachedData;
  if (!write) {
    try {
      cachedData = readFileSync(cacheFile);
    } catch {
      // no cache (yet): compiled from source
    }
  }
  // The same wrapper as Node's own for CommonJS, so the source (and its cache) is the same each time.
  const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(file, 'utf8')}\n})`;
  const script = new Script(source, { filename: file, cachedData });
  if (write) {
    const exit = process.exit.bind(process);
    process.exit = (code) => {
      writeFileSync(cacheFile, script.createCachedData());
      exit(code);
    };
  }
  const module = { exports: {} };
  script.runInThisContext()(module.exports, createRequire(file), module, file, dirname(file));
}
