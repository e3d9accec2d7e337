#!/usr/bin/env node
/*
 * Assembles the runner agent as one self-contained folder that runs on any Linux root
 * filesystem of the same architecture, whatever its libc or whether it has Node:
 *
 *   <dest>/node/bin/node       this Node.js binary
 *   <dest>/node/lib/*          every library `ldd` names for it, and the dynamic loader as ld.so
 *   <dest>/app/                runyard: bin, dist, migrations, package.json, production node_modules
 *
 * Started as `<dest>/node/lib/ld.so --library-path <dest>/node/lib <dest>/node/bin/node
 * <dest>/app/bin/runyard.js agent`, it needs nothing from the image around it, so the container
 * provider can layer it onto any base image a job asks for (`COPY --from=<runner image>`).
 *
 *   node scripts/bundle-agent.mjs /opt/runyard        (run from the package root, after a build)
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, realpathSync, rmSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** The libraries and loader a binary needs, as `ldd` resolves them here. */
export function sharedLibraries(bin) {
  const r = spawnSync('ldd', [bin], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ldd ${bin} failed: ${(r.stderr || r.stdout).trim()}`);
  const libs = [];
  let loader;
  for (const line of r.stdout.split('\n')) {
    const path = line.match(/(\/\S+)/)?.[1];
    if (!path) continue;
    if (/\bld-linux|\bld-musl|\/ld\S*\.so/.test(basename(path)) && !line.includes('=>')) loader = path;
    else libs.push(path);
  }
  if (!loader) throw new Error(`ldd ${bin} names no dynamic loader; is it a dynamic executable?`);
  return { libs, loader };
}

/**
 * Production dependencies only the control plane loads: the cloud providers' SDKs. A runner never
 * needs them (its agent is dist/agent.mjs, one bundled file), and they would triple the image.
 */
const CONTROL_PLANE_ONLY = new Set(['@aws-sdk/client-ecs', '@aws-sdk/client-ec2', '@kubernetes/client-node']);

/**
 * runyard's own files and the production dependencies a runner may load, relative to the package
 * root: everything reachable from runyard's dependencies except CONTROL_PLANE_ONLY (a package
 * those share with the rest stays).
 */
export function packageFiles(root = ROOT) {
  const r = spawnSync('npm', ['ls', '--omit=dev', '--all', '--json', '--long'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  let tree;
  try {
    tree = JSON.parse(r.stdout);
  } catch {
    throw new Error(`npm ls gave no dependency tree in ${root}: ${r.stderr}`);
  }
  // npm prints a package once in full and elsewhere as "deduped": merge what each path requires.
  const requires = new Map();
  (function collect(node) {
    for (const dep of Object.values(node.dependencies ?? {})) {
      if (!dep.path) continue;
      const kids = requires.get(dep.path) ?? new Set();
      requires.set(dep.path, kids);
      for (const k of Object.values(dep.dependencies ?? {})) if (k.path) kids.add(k.path);
      collect(dep);
    }
  })(tree);
  const keep = new Set();
  const todo = Object.entries(tree.dependencies ?? {}).filter(([name, d]) => !CONTROL_PLANE_ONLY.has(name) && d.path).map(([, d]) => d.path);
  while (todo.length) {
    const p = todo.pop();
    if (keep.has(p)) continue;
    keep.add(p);
    for (const k of requires.get(p) ?? []) todo.push(k);
  }
  const deps = [...keep].map((p) => relative(root, p)).filter((l) => l.startsWith('node_modules')).sort();
  if (deps.length === 0) throw new Error(`npm ls found no production dependencies in ${root}: ${r.stderr}`);
  if (!existsSync(join(root, 'dist', 'bin', 'cli.js'))) throw new Error(`${root}/dist is missing: run \`npm run build\` first`);
  return ['bin', 'dist', 'package.json', 'src/store/migrations', ...deps].filter((p) => existsSync(join(root, p)));
}

export function bundleAgent(dest, { root = ROOT, node = process.execPath } = {}) {
  const realNode = realpathSync(node);
  rmSync(dest, { recursive: true, force: true });
  const bin = join(dest, 'node', 'bin');
  const lib = join(dest, 'node', 'lib');
  mkdirSync(bin, { recursive: true });
  mkdirSync(lib, { recursive: true });
  copyFileSync(realNode, join(bin, 'node'));
  chmodSync(join(bin, 'node'), 0o755);
  const { libs, loader } = sharedLibraries(realNode);
  for (const l of libs) copyFileSync(realpathSync(l), join(lib, basename(l)));
  copyFileSync(realpathSync(loader), join(lib, 'ld.so'));
  chmodSync(join(lib, 'ld.so'), 0o755);
  for (const p of packageFiles(root)) cpSync(join(root, p), join(dest, 'app', p), { recursive: true, dereference: true, preserveTimestamps: true });
  return dest;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dest = process.argv[2];
  if (!dest) {
    console.error('usage: node scripts/bundle-agent.mjs DEST   (e.g. /opt/runyard)');
    process.exit(2);
  }
  bundleAgent(resolve(dest));
  console.log(`agent bundled into ${resolve(dest)}`);
}
