/*
 * Summarises V8 CPU profiles (node --cpu-prof): self time by function and by area (our code by
 * file, each dependency, node internals, GC, idle). Usage:
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile | dir> [--top 30]
 * A directory sums every profile in it (e.g. all agents of one run).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export function area(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(idle)') return 'idle';
  if (fn === '(program)') return '(program: native, not attributed)';
  if (!url) return fn.startsWith('(') ? fn : 'native / builtins';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `dep: ${nm[1]}`;
  const src = /\/(src|dist)\/(.*?)\.(ts|js)/.exec(url);
  if (src) return `runyard: ${src[2]}`;
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  return url.replace(/^file:\/\//, '');
}

export interface Summary {
  totalMs: number;
  byArea: Map<string, number>;
  byFunction: Map<string, number>;
}

export function summarize(files: string[]): Summary {
  const byArea = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let totalMs = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(f, 'utf8')) as Profile;
    const nodes = new Map(p.nodes.map((n) => [n.id, n]));
    const selfUs = new Map<number, number>();
    for (let i = 0; i < p.samples.length; i++) selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
    for (const [id, us] of selfUs) {
      const n = nodes.get(id)!;
      const ms = us / 1000;
      const a = area(n.callFrame.url, n.callFrame.functionName);
      byArea.set(a, (byArea.get(a) ?? 0) + ms);
      const fname = `${n.callFrame.functionName || '(anonymous)'} ${a.startsWith('runyard') || a.startsWith('dep') || a.startsWith('node') ? `[${a}:${n.callFrame.lineNumber + 1}]` : ''}`;
      byFunction.set(fname, (byFunction.get(fname) ?? 0) + ms);
      totalMs += ms;
    }
  }
  return { totalMs, byArea, byFunction };
}

export function profileFiles(target: string): string[] {
  if (statSync(target).isDirectory()) return readdirSync(target).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(target, f));
  return [target];
}

/** Rows of [name, ms, % of non-idle] sorted by time. */
export function topRows(m: Map<string, number>, totalBusy: number, top: number): [string, number, number][] {
  return [...m.entries()]
    .filter(([k]) => k !== 'idle' && !k.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => [k, Math.round(v), +((v / totalBusy) * 100).toFixed(1)]);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const target = process.argv[2];
  if (!target) {
    console.error('usage: profile-summary.ts <file.cpuprofile | dir> [--top N]');
    process.exit(2);
  }
  const top = Number(process.argv[process.argv.indexOf('--top') + 1] || 30) || 30;
  const files = profileFiles(target);
  const s = summarize(files);
  const idle = s.byArea.get('idle') ?? 0;
  const busy = s.totalMs - idle;
  console.log(`${files.length} profile(s), ${Math.round(s.totalMs)} ms sampled, ${Math.round(busy)} ms busy (${((busy / s.totalMs) * 100).toFixed(0)}%)\n`);
  console.log('Self time by area (% of busy):');
  for (const [k, ms, pct] of topRows(s.byArea, busy, top)) console.log(`  ${String(pct).padStart(5)}%  ${String(ms).padStart(7)} ms  ${k}`);
  console.log('\nSelf time by function (% of busy):');
  for (const [k, ms, pct] of topRows(s.byFunction, busy, top)) console.log(`  ${String(pct).padStart(5)}%  ${String(ms).padStart(7)} ms  ${k}`);
}
