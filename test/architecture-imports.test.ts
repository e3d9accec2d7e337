/*
 * The layering, checked on the import graph of src/ (ARCHITECTURE.md, "Folders and which way
 * imports point"):
 *   - nothing imports src/api/ but src/api/ itself and src/server.ts (the composition root);
 *   - no cycle between the top-level folders of src/ (type-only imports count: they are layering
 *     too; but not those of src/config/: every layer reads the config's types, and each provider
 *     contributes its pool block to the config's schema);
 *   - the agent imports src/protocol/ with `import type` only, so its bundle stays small.
 * The graph is read with esbuild, which tsx brings (madge's peer dependencies conflict with the
 * TypeScript here, and TypeScript 7 has no JavaScript API): every import, export-from and
 * dynamic import() of a relative path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { transformSync } from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');

export interface Edge {
  /** importing file, relative to the repository ("src/app/jobs.ts") */
  from: string;
  /** imported file, relative to the repository */
  to: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** `./x.js` → the file it names: x.ts, x.tsx, x/index.ts (resolved like the compiler does). */
function resolveImport(fromFile: string, spec: string): string | undefined {
  const base = resolve(dirname(fromFile), spec);
  const stem = base.replace(/\.(m?js)$/, '');
  for (const c of [stem + '.ts', stem + '.mts', stem + '.tsx', join(stem, 'index.ts'), base]) if (existsSync(c) && statSync(c).isFile()) return c;
  return undefined;
}

/**
 * Every relative import of one file, and whether it is type-only (`import type`, `export type`,
 * `import { type A }`, `import('x').T`). What esbuild keeps under verbatimModuleSyntax is what
 * the file loads at run time; whatever else the source names is a type-only import.
 */
export function importsOf(file: string, text: string): { spec: string; typeOnly: boolean }[] {
  const out = transformSync(text, { loader: 'ts', format: 'esm', sourcefile: file, tsconfigRaw: { compilerOptions: { verbatimModuleSyntax: true } } }).code;
  const values = new Set<string>();
  for (const m of out.matchAll(/^(?:import|export)\b([^;]*?)\bfrom\s*"([^"]+)"|^import\s*"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)/gm)) {
    // `import {} from "x"`: every name was `type`
    if (m[2] !== undefined && /^\s*\{\s*\}\s*$/.test(m[1]!)) continue;
    values.add((m[2] ?? m[3] ?? m[4])!);
  }
  const found: { spec: string; typeOnly: boolean }[] = [];
  const seen = new Set<string>();
  for (const m of text.matchAll(/\bfrom\s*(['"])([^'"\n]+)\1|^\s*import\s*(['"])([^'"\n]+)\3|\bimport\(\s*(['"])([^'"\n]+)\5\s*\)/gm)) {
    const spec = (m[2] ?? m[4] ?? m[6])!;
    const typeOnly = !values.has(spec);
    const key = `${spec}\0${typeOnly}`;
    if (seen.has(key)) continue;
    seen.add(key);
    found.push({ spec, typeOnly });
  }
  return found.filter((i) => i.spec.startsWith('.'));
}

let cached: Edge[] | undefined;

export function importGraph(srcDir = SRC): Edge[] {
  if (srcDir === SRC && cached) return cached;
  const edges: Edge[] = [];
  for (const file of sourceFiles(srcDir)) {
    for (const i of importsOf(file, readFileSync(file, 'utf8'))) {
      const target = resolveImport(file, i.spec);
      if (!target) throw new Error(`${relative(ROOT, file)} imports ${i.spec}, which resolves to no file`);
      edges.push({ from: rel(file), to: rel(target), typeOnly: i.typeOnly });
    }
  }
  if (srcDir === SRC) cached = edges;
  return edges;
}

const rel = (p: string) => relative(ROOT, p).split(sep).join('/');

/** The top-level part of src/ a file is in: "app" for src/app/jobs.ts, "server.ts" for src/server.ts. */
export function folderOf(file: string): string {
  const parts = file.replace(/^src\//, '').split('/');
  return parts[0]!;
}

/**
 * Cycles between folders, each as its path ("app → github → app") with one import for every
 * arrow, so the message says which file to change.
 */
export function folderCycles(edges: Edge[]): string[] {
  const arrows = new Map<string, Map<string, Edge>>();
  for (const e of edges) {
    const a = folderOf(e.from);
    const b = folderOf(e.to);
    if (a === b || !e.from.startsWith('src/') || !e.to.startsWith('src/')) continue;
    if (!arrows.has(a)) arrows.set(a, new Map());
    if (!arrows.get(a)!.has(b)) arrows.get(a)!.set(b, e);
  }
  const cycles = new Map<string, string>();
  const path: string[] = [];
  const onPath = new Set<string>();
  const done = new Set<string>();
  const walk = (node: string) => {
    path.push(node);
    onPath.add(node);
    for (const next of [...(arrows.get(node)?.keys() ?? [])].sort()) {
      if (onPath.has(next)) {
        const loop = [...path.slice(path.indexOf(next)), next];
        // one report per cycle, whichever folder it was entered from
        const key = [...loop.slice(0, -1)].sort().join(',');
        if (!cycles.has(key)) {
          const via = loop.slice(0, -1).map((f, i) => {
            const e = arrows.get(f)!.get(loop[i + 1]!)!;
            return `${e.from} imports ${e.to}`;
          });
          cycles.set(key, `${loop.join(' → ')} (${via.join('; ')})`);
        }
      } else if (!done.has(next)) walk(next);
    }
    path.pop();
    onPath.delete(node);
    done.add(node);
  };
  for (const node of [...arrows.keys()].sort()) if (!done.has(node)) walk(node);
  return [...cycles.values()];
}

/** Imports of src/api/ from anywhere but src/api/ itself and src/server.ts. */
export function apiImporters(edges: Edge[]): string[] {
  return edges.filter((e) => folderOf(e.to) === 'api' && folderOf(e.from) !== 'api' && e.from !== 'src/server.ts').map((e) => `${e.from} imports ${e.to}`);
}

/** Imports of src/protocol/ by the agent that are not `import type`. */
export function agentValueImportsOfProtocol(edges: Edge[]): string[] {
  return edges.filter((e) => folderOf(e.from) === 'agent' && folderOf(e.to) === 'protocol' && !e.typeOnly).map((e) => `${e.from} imports ${e.to} (not import type)`);
}

test('nothing but src/server.ts imports src/api/', () => {
  assert.deepEqual(apiImporters(importGraph()), []);
});

/** The arrows the cycle check follows: all but type-only imports of the config (see the top). */
export const layeringEdges = (edges: Edge[]) => edges.filter((e) => !(e.typeOnly && folderOf(e.to) === 'config'));

test('no cycles between the folders of src/', () => {
  const cycles = folderCycles(layeringEdges(importGraph()));
  assert.equal(cycles.length, 0, `import cycles between folders:\n  ${cycles.join('\n  ')}`);
});

test('the agent imports src/protocol/ with import type only', () => {
  assert.deepEqual(agentValueImportsOfProtocol(importGraph()), []);
});

test('the graph is read: the composition root imports the HTTP layer, use cases and the scheduler', () => {
  const from = importGraph().filter((e) => e.from === 'src/server.ts').map((e) => folderOf(e.to));
  for (const folder of ['api', 'app', 'store', 'scheduler', 'providers', 'github']) assert.ok(from.includes(folder), `src/server.ts imports ${folder}`);
});

test('the checks fail on a bad graph, naming the cycle and the imports', () => {
  const edges: Edge[] = [
    { from: 'src/app/jobs.ts', to: 'src/github/service.ts', typeOnly: false },
    { from: 'src/github/service.ts', to: 'src/store/db.ts', typeOnly: true },
    { from: 'src/store/db.ts', to: 'src/app/context.ts', typeOnly: false },
    { from: 'src/scheduler/scheduler.ts', to: 'src/api/context.ts', typeOnly: true },
    { from: 'src/agent/agent.ts', to: 'src/protocol/wire.ts', typeOnly: false },
    { from: 'src/agent/heartbeat.ts', to: 'src/protocol/wire.ts', typeOnly: true },
  ];
  assert.deepEqual(folderCycles(edges), [
    'app → github → store → app (src/app/jobs.ts imports src/github/service.ts; src/github/service.ts imports src/store/db.ts; src/store/db.ts imports src/app/context.ts)',
  ]);
  assert.deepEqual(apiImporters(edges), ['src/scheduler/scheduler.ts imports src/api/context.ts']);
  assert.deepEqual(agentValueImportsOfProtocol(edges), ['src/agent/agent.ts imports src/protocol/wire.ts (not import type)']);
  // a value import of the config closes a cycle; a type-only one does not
  const config: Edge[] = [
    { from: 'src/config/schema.ts', to: 'src/providers/ecs/pool-config.ts', typeOnly: false },
    { from: 'src/providers/ecs/ecs-provider.ts', to: 'src/config/schema.ts', typeOnly: true },
  ];
  assert.deepEqual(folderCycles(layeringEdges(config)), []);
  assert.equal(folderCycles(layeringEdges([...config, { from: 'src/providers/ecs/index.ts', to: 'src/config/load.ts', typeOnly: false }])).length, 1);
});

test('type-only imports are told apart from value imports', () => {
  const found = importsOf(
    'x.ts',
    [
      "import type { A } from './a.js';",
      "import { type B, type C } from './b.js';",
      "import { type D, e } from './d.js';",
      "import f from './f.js';",
      "export type { G } from './g.js';",
      "export { h } from './h.js';",
      "const i = await import('./i.js');",
      "let j: import('./j.js').J;",
      "import 'node:fs';",
    ].join('\n'),
  );
  assert.deepEqual(found, [
    { spec: './a.js', typeOnly: true },
    { spec: './b.js', typeOnly: true },
    { spec: './d.js', typeOnly: false },
    { spec: './f.js', typeOnly: false },
    { spec: './g.js', typeOnly: true },
    { spec: './h.js', typeOnly: false },
    { spec: './i.js', typeOnly: false },
    { spec: './j.js', typeOnly: true },
  ]);
});
