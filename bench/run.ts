/*
 * npm run bench [-- --only queue,latency] [--quick] [--runs N] [--profile]
 *
 * Runs each section in its own process (bench/sections/<id>.ts), prints its table, merges the
 * results into bench/results.json (so `--only` re-runs update just those sections) and writes
 * BENCHMARKS.md: the machine, the date, the commands, a table per section (measured, target,
 * met?) and the findings (bench/FINDINGS.md).
 *
 * While a section runs, CPU use on the machine is sampled: what this bench used (its process
 * tree and the PostgreSQL backends of its databases) and what everything else used, so a
 * figure taken while other work loaded the machine is marked as such.
 */
import { spawn } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CpuSampler, allPids, cmdline, machineCpu, readProcStat } from './lib/proc.js';
import { pgVersion } from './lib/pg.js';
import { fmt } from './lib/stats.js';
import type { SectionResult } from './lib/section.js';
import { profileFiles, summarize, topRows } from './profile-summary.js';

const ROOT = resolve(import.meta.dirname, '..');
const RESULTS = join(ROOT, 'bench', 'results.json');
const OUT_MD = join(ROOT, 'BENCHMARKS.md');
const FINDINGS = join(ROOT, 'bench', 'FINDINGS.md');

const SECTIONS: { id: string; title: string; flags?: string[] }[] = [
  { id: 'queue', title: '1. Queue core throughput' },
  { id: 'e2e', title: '2. End-to-end throughput' },
  { id: 'latency', title: '3. Latency submit → job started' },
  { id: 'heartbeats', title: '4. Heartbeats' },
  { id: 'sse', title: '5. Control channels (SSE)', flags: ['--expose-gc', '--max-old-space-size=4096'] },
  { id: 'coldstart', title: '6. Scale from zero' },
  { id: 'container-coldstart', title: '6b. Scale from zero (container provider)' },
  { id: 'kubernetes', title: '6c. Kubernetes provider (fake API server, pods on podman)' },
  { id: 'memory', title: '7. Memory' },
  { id: 'ec2', title: '8. EC2 warm pool (fake EC2)' },
  { id: 'ecs', title: '9. ECS provider (fake ECS endpoint)' },
  { id: 'simulator', title: '10. Simulator: a day of 1,000,000 jobs' },
  { id: 'scale', title: '11. Scale: 10,000 runners, 100,000 queued jobs', flags: ['--max-old-space-size=4096'] },
];

function parseArgs(argv: string[]) {
  const a = { only: [] as string[], quick: false, runs: undefined as number | undefined, profile: false, noWrite: false, report: false };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    if (x === '--quick') a.quick = true;
    else if (x === '--profile') a.profile = true;
    else if (x === '--no-write') a.noWrite = true;
    else if (x === '--report') a.report = true;
    else if (x === '--only') a.only = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (x.startsWith('--only=')) a.only = x.slice(7).split(',').filter(Boolean);
    else if (x === '--runs') a.runs = Number(argv[++i]);
    else if (x.startsWith('--runs=')) a.runs = Number(x.slice(7));
    else if (x === '--help' || x === '-h') {
      console.log('usage: npm run bench -- [--only ' + SECTIONS.map((s) => s.id).join(',') + '] [--quick] [--runs N] [--profile] [--no-write]');
      process.exit(0);
    } else {
      console.error(`unknown argument ${x}`);
      process.exit(2);
    }
  }
  for (const id of a.only) if (!SECTIONS.some((s) => s.id === id)) {
    console.error(`unknown section ${id}; sections: ${SECTIONS.map((s) => s.id).join(', ')}`);
    process.exit(2);
  }
  return a;
}

const benchBackends = () => allPids().filter((pid) => readProcStat(pid)?.comm === 'postgres' && / runyard_bench_/.test(cmdline(pid)));

async function runOne(id: string, flags: string[], opts: ReturnType<typeof parseArgs>, profileDir: string | undefined): Promise<SectionResult> {
  const out = join(ROOT, 'bench', `.result-${id}.json`);
  rmSync(out, { force: true });
  const execArgv = [...flags];
  const env: NodeJS.ProcessEnv = { ...process.env, BENCH_QUICK: opts.quick ? '1' : '0', RUNYARD_LOG_LEVEL: 'info' };
  if (opts.runs) env.BENCH_RUNS = String(opts.runs);
  if (profileDir) {
    const dir = join(profileDir, id);
    mkdirSync(dir, { recursive: true });
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${join(dir, 'server')}`);
    env.BENCH_PROFILE_DIR = dir;
  }
  const load1Before = loadavg()[0]!;
  const m0 = machineCpu();
  const self0 = readProcStat(process.pid)!;
  // Our process tree is measured through this process's reaped-children CPU (cutime/cstime);
  // PostgreSQL backends of the bench's databases are sampled; the rest of the machine is "other".
  const pg = new CpuSampler(() => ({ pg: benchBackends() }), 1000).start();
  const child = spawn(process.execPath, [...execArgv, '--import', 'tsx', join(ROOT, 'bench', 'sections', `${id}.ts`), out], { cwd: ROOT, env, stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const pgCpu = pg.stop();
  const m1 = machineCpu();
  const self1 = readProcStat(process.pid)!;
  const machineMs = Math.max(1, m1.total - m0.total);
  const busyMs = m1.busy - m0.busy;
  const oursMs = self1.children - self0.children + (self1.self - self0.self) + (pgCpu.groups.pg?.cpuS ?? 0) * 1000;
  let result: SectionResult;
  if (existsSync(out)) {
    result = JSON.parse(readFileSync(out, 'utf8'));
    rmSync(out, { force: true });
  } else result = { id, title: id, rows: [], notes: [], error: `section process exited with code ${code} without a result` };
  result.load = {
    load1Before,
    load1After: loadavg()[0]!,
    machineBusyPct: (busyMs / machineMs) * 100,
    benchPct: Math.min(100, (oursMs / machineMs) * 100),
    otherPct: Math.max(0, ((busyMs - oursMs) / machineMs) * 100),
  };
  if (profileDir) summarizeProfiles(join(profileDir, id), result);
  return result;
}

function summarizeProfiles(dir: string, result: SectionResult) {
  for (const [name, sub] of [['server process', 'server'], ['agent processes', 'agents'], ['server process during one fan-out', 'fanout']] as const) {
    const d = join(dir, sub);
    if (!existsSync(d)) continue;
    const files = profileFiles(d);
    if (!files.length) continue;
    const s = summarize(files);
    const busy = s.totalMs - (s.byArea.get('idle') ?? 0);
    result.details ??= [];
    result.details.push({ title: `CPU profile, ${name} (${files.length} profile(s), self time by area, % of busy time)`, headers: ['area', 'ms', '%'], rows: topRows(s.byArea, busy, 12) });
    result.details.push({ title: `CPU profile, ${name}: top functions by self time`, headers: ['function', 'ms', '%'], rows: topRows(s.byFunction, busy, 15) });
  }
}

// ---------- output ----------

function valueText(v: number | null, unit: string): string {
  if (v === null || v === undefined) return 'n/a';
  if (unit === 'bytes') return `${fmt(v / 1024)} KiB`;
  return `${fmt(v)} ${unit}`.trim();
}

function mdTable(headers: string[], rows: (string | number)[][]): string {
  const esc = (x: string | number) => String(x).replace(/\|/g, '\\|');
  return [`| ${headers.map(esc).join(' | ')} |`, `| ${headers.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

function textTable(headers: string[], rows: (string | number)[][]): string {
  const all = [headers, ...rows].map((r) => r.map(String));
  const w = headers.map((_, i) => Math.min(90, Math.max(...all.map((r) => (r[i] ?? '').length))));
  const line = (r: string[]) => r.map((c, i) => (c.length > w[i]! ? c.slice(0, w[i]! - 1) + '…' : c.padEnd(w[i]!))).join('  ');
  return [line(all[0]!), w.map((x) => '-'.repeat(x)).join('  '), ...all.slice(1).map(line)].join('\n');
}

/** Informational figures listed in the summary too (besides rows flagged `key` by their section). */
const KEY_METRICS = [
  /^RSS (idle, PostgreSQL|idle, embedded PGlite store, restart|with .* runners|after .* jobs|trend)/,
  /^server (RSS|JS heap) per connection/,
  /^fan-out of one event to all/,
  /^reference: bare/,
  /^dead tuples on jobs/,
  /^submit → runner registered, p50/,
  /^before: runyard completing one job per completeJob\(\) call, process/,
];

const metText = (met: boolean | undefined) => (met === undefined ? '' : met ? 'yes' : '**no**');

function sectionRows(r: SectionResult) {
  return r.rows.map((x) => [x.metric, valueText(x.value, x.unit), x.target ?? '', metText(x.met), x.runs && x.runs.length > 1 ? x.runs.join(', ') : '', x.note ?? '']);
}

function printSection(r: SectionResult) {
  console.log(`\n== ${r.title}${r.quick ? ' (quick)' : ''} — ${r.durationS}s ==`);
  if (r.error) console.log(`ERROR: ${r.error.split('\n').slice(0, 6).join('\n')}`);
  if (r.rows.length) console.log(textTable(['measured', 'value', 'target', 'met?', 'runs', 'note'], sectionRows(r).map((row) => row.map((c) => String(c).replace(/\*\*/g, '')))));
  for (const d of r.details ?? []) console.log(`\n${d.title}\n${textTable(d.headers, d.rows)}`);
  if (r.load) console.log(`\nmachine busy ${fmt(r.load.machineBusyPct)}% (this bench ${fmt(r.load.benchPct)}%, other processes ${fmt(r.load.otherPct)}%), load average ${fmt(r.load.load1Before)} → ${fmt(r.load.load1After)}`);
}

async function machine() {
  const cpuModel = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model ?? 'unknown').trim();
  return {
    cpu: cpuModel,
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    node: process.version,
    postgres: await pgVersion(),
    kernel: release(),
    fileLimit: (() => {
      try {
        const l = readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+(\d+)\s+(\d+)/);
        return l ? `${l[1]} soft / ${l[2]} hard` : 'unknown';
      } catch {
        return 'unknown';
      }
    })(),
  };
}

function writeMarkdown(all: Record<string, SectionResult>, info: Awaited<ReturnType<typeof machine>>) {
  const lines: string[] = [];
  const dates = Object.values(all).map((r) => r.startedAt).filter(Boolean).sort();
  lines.push('# runyard benchmarks', '');
  lines.push('Generated by `npm run bench` (bench/run.ts); do not edit by hand: the findings come from `bench/FINDINGS.md`.', '');
  lines.push(`- **Machine:** ${info.cpu}, ${info.cores} cores, ${info.memoryGiB} GiB RAM, Linux ${info.kernel}, open files ${info.fileLimit}`);
  lines.push(`- **Software:** Node.js ${info.node}; ${info.postgres} on 127.0.0.1:5432`);
  lines.push(`- **Date:** ${dates[0]?.slice(0, 16).replace('T', ' ')} – ${dates[dates.length - 1]?.slice(0, 16).replace('T', ' ')} UTC (each section's own start time is given below)`);
  lines.push('- **Command:** `npm run bench` (all sections, full durations); one section: `npm run bench -- --only <id>`; `--quick` shortens every run (e.g. the 2-minute sustained run to 15 s); `--profile` adds CPU profiles of the server and the agents to each section.');
  lines.push('- **Method:** every section runs in a fresh process with a fresh PostgreSQL database (or a fresh PGlite data dir); load generators run in separate processes; short measurements are repeated and the median is reported (each run\'s value is listed). CPU use of other processes on the machine during each section is reported with it.');
  lines.push('');
  lines.push('## Summary', '');
  const summary: (string | number)[][] = [];
  for (const s of SECTIONS) {
    const r = all[s.id];
    if (!r) continue;
    if (r.error && !r.rows.length) summary.push([r.title, 'failed', '', '**failed**']);
    for (const x of r.rows.filter((x) => x.target || x.key || KEY_METRICS.some((re) => re.test(x.metric)))) summary.push([`${s.title}: ${x.metric}`, valueText(x.value, x.unit), x.target ?? '', metText(x.met)]);
  }
  lines.push(mdTable(['figure', 'measured', 'target', 'met?'], summary), '');
  for (const s of SECTIONS) {
    const r = all[s.id];
    if (!r) continue;
    lines.push(`## ${r.title}`, '');
    lines.push(`Command: \`npm run bench -- --only ${r.id}${r.quick ? ' --quick' : ''}\` · run ${r.startedAt?.slice(0, 16).replace('T', ' ')} UTC · ${r.durationS}s${r.quick ? ' · **quick mode (shortened runs)**' : ''}`);
    if (r.load) lines.push(`· machine busy ${fmt(r.load.machineBusyPct)}% (this bench ${fmt(r.load.benchPct)}%, other processes ${fmt(r.load.otherPct)}%), 1-min load average ${fmt(r.load.load1Before)} → ${fmt(r.load.load1After)}`);
    lines.push('');
    if (r.error) lines.push('**Error:**', '', '```', r.error.slice(0, 3000), '```', '');
    if (r.rows.length) lines.push(mdTable(['measured', 'value', 'target', 'met?', 'runs', 'note'], sectionRows(r)), '');
    for (const n of r.notes) lines.push(`- ${n}`);
    if (r.notes.length) lines.push('');
    for (const d of r.details ?? []) lines.push(`**${d.title}**`, '', mdTable(d.headers, d.rows), '');
  }
  if (existsSync(FINDINGS)) lines.push(readFileSync(FINDINGS, 'utf8').trim(), '');
  writeFileSync(OUT_MD, lines.join('\n'));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const chosen = opts.only.length ? SECTIONS.filter((s) => opts.only.includes(s.id)) : SECTIONS;
  const info = await machine();
  console.log(`runyard bench on ${info.cpu}, ${info.cores} cores, ${info.memoryGiB} GiB, Node ${info.node}, ${info.postgres}`);
  console.log(`sections: ${chosen.map((s) => s.id).join(', ')}${opts.quick ? ' (quick)' : ''}`);
  const profileDir = opts.profile ? join(ROOT, 'bench', 'profiles', new Date().toISOString().replace(/[:.]/g, '-')) : undefined;
  const all: Record<string, SectionResult> = existsSync(RESULTS) ? JSON.parse(readFileSync(RESULTS, 'utf8')) : {};
  if (opts.report) {
    writeMarkdown(all, info);
    console.log(`wrote ${OUT_MD} from ${RESULTS}`);
    return;
  }
  let failed = 0;
  for (const s of chosen) {
    console.log(`\n>> ${s.title} (load average ${fmt(loadavg()[0]!)})`);
    const r = await runOne(s.id, s.flags ?? [], opts, profileDir);
    if (r.error) failed++;
    printSection(r);
    all[s.id] = r;
    if (!opts.noWrite) {
      writeFileSync(RESULTS, JSON.stringify(all, null, 2));
      writeMarkdown(all, info);
    }
  }
  if (!opts.noWrite) console.log(`\nwrote ${OUT_MD} and ${RESULTS}`);
  if (profileDir) console.log(`profiles in ${profileDir} (summarise with: node --import tsx bench/profile-summary.ts <dir>)`);
  process.exit(failed ? 1 : 0);
}


await main();
