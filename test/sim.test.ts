/*
 * The simulator: hand-computed scenarios through the real decide(), determinism, the trace
 * formats, bad input, the CLI, reading a PostgreSQL store, and the HTML report in Chromium.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { poolSchema } from '../src/config/schema.js';
import { Simulation, type SimPoolInput } from '../src/sim/simulation.js';
import { parseTrace, type TraceJob } from '../src/sim/trace.js';
import { TokenBucket } from '../src/lib/token-bucket.js';
import { runCli } from './helpers/cli.js';
import { openTestDb } from './helpers/db.js';
import { launchBrowser, screenshot, watchConsole } from './helpers/browser.js';

const T0 = Date.parse('2026-01-05T00:00:00Z'); // a Monday
const job = (at: number, duration: number, pool = 'p'): TraceJob => ({ arrival: T0 + at, pool, labels: [], duration, outcome: 'succeeded' });
const simPool = (fields: Record<string, unknown>, model: Partial<SimPoolInput> = {}): SimPoolInput => ({
  config: poolSchema.parse({ name: 'p', ...fields }),
  latency: { kind: 'fixed', value: 10_000 },
  startFailureRate: 0,
  costPerHour: 1,
  ...model,
});
const run = (pools: SimPoolInput[], jobs: TraceJob[], o: { warmupMs?: number; seed?: number } = {}) =>
  new Simulation(pools, jobs, { seed: o.seed ?? 1, tickMs: 10_000, sloMs: 30_000, warmupMs: o.warmupMs ?? 0 }).run();

describe('simulator scenarios (computed by hand)', () => {
  test('a capped pool serialises jobs behind one cold start', () => {
    const r = run([simPool({ maxRunners: 1 })], [job(0, 60_000), job(0, 60_000), job(0, 60_000)]);
    assert.deepEqual([r.wait.p50, r.wait.max], [70_000, 130_000], 'waits 10 s, 70 s, 130 s');
    assert.equal(r.overSlo, 2);
    assert.equal(r.peakRunners, 1);
    assert.equal(r.runnerHours, +(190_000 / 3_600_000).toFixed(3), 'one runner from 0 to the last job end at 190 s');
    assert.equal(r.idleRunnerHours, 0);
    assert.equal(r.cost, +(190_000 / 3_600_000).toFixed(4));
  });

  test('several slots per runner; demand starts enough runners at once', () => {
    const r = run([simPool({ maxRunners: 10, maxJobsPerRunner: 2 })], Array.from({ length: 5 }, () => job(0, 1_000)));
    assert.equal(r.starts, 3, 'ceil(5 / 2) runners');
    assert.equal(r.wait.max, 10_000);
  });

  test('idleTimeout scales down on the tick; the next job pays a cold start', () => {
    const r = run([simPool({ idleTimeout: '5m' }, { latency: { kind: 'fixed', value: 5_000 } })], [job(0, 10_000), job(1_200_000, 10_000)]);
    assert.equal(r.starts, 2);
    assert.deepEqual([r.wait.p50, r.wait.max], [5_000, 5_000]);
    // runner 1: 0 → 320 s (idle from 15 s, idle 300 s at the tick of 320 s); runner 2: 1200 → 1215 s
    assert.equal(r.runnerHours, +((320_000 + 15_000) / 3_600_000).toFixed(3));
    assert.equal(r.idleRunnerHours, +(305_000 / 3_600_000).toFixed(3));
  });

  test('minIdle keeps a runner warm: no cold start, and it is counted as idle time', () => {
    const r = run([simPool({ minIdle: 1 })], [job(60_000, 10_000)], { warmupMs: 60_000 });
    assert.equal(r.wait.max, 0, 'the warm runner took it at once');
    assert.equal(r.starts, 2, 'the warm one, and one more to stay warm while it was busy');
  });

  test('scheduled minIdle: warm in the window, none outside (same decide() as the server)', () => {
    const sched = { timeZone: 'Europe/Berlin', windows: [{ days: 'mon-fri', from: '08:00', to: '19:00', minIdle: 2 }] };
    // Monday 09:00 Berlin = 08:00 UTC, and Monday 20:00 Berlin = 19:00 UTC; the run starts at 06:00 UTC
    const jobs = [job(8 * 3_600_000, 1_000), job(19 * 3_600_000, 1_000)];
    const r = run([simPool({ maxRunners: 4, idleTimeout: '5m', minIdleSchedule: sched })], jobs, { warmupMs: 2 * 3_600_000 });
    const waits = r.wait;
    assert.equal(waits.p50, 0, 'the 09:00 job found a warm runner');
    assert.equal(waits.max, 10_000, 'the 20:00 job found none: the window closed at 19:00');
    const at = (hUtc: number) => r.series.idle[r.series.t.findIndex((t) => t >= T0 + hUtc * 3_600_000)]!;
    assert.equal(at(6.5), 0, 'before 08:00 Berlin: none warm');
    assert.equal(at(12), 2, 'midday: two warm');
    assert.equal(at(18.5), 0, 'after 19:00 Berlin and idleTimeout: none');
  });

  test('ephemeral runners take one job each', () => {
    const r = run([simPool({ ephemeral: true, maxRunners: 5 })], [job(0, 1_000), job(0, 1_000), job(30_000, 1_000)]);
    assert.equal(r.starts, 3);
    assert.equal(r.wait.max, 10_000);
  });

  test('the provider API limit (token bucket) spaces out starts', () => {
    const r = run([simPool({ maxRunners: 10 }, { latency: { kind: 'fixed', value: 0 }, apiRate: { perSecond: 1, burst: 1 } })], [job(0, 60_000), job(0, 60_000), job(0, 60_000)]);
    assert.deepEqual([r.wait.p50, r.wait.max], [1_000, 2_000], 'starts at 0, 1 s and 2 s');
    const b = new TokenBucket(2, 2);
    assert.deepEqual([b.reserve(1, 0), b.reserve(1, 0), b.reserve(1, 0), b.reserve(1, 0)], [0, 0, 500, 1_000]);
  });

  test('failed starts back off; a pool whose starts all fail never runs its job', () => {
    const r = run([simPool({}, { startFailureRate: 1 })], [job(0, 1_000)]);
    assert.equal(r.unfinished, 1);
    assert.ok(r.failedStarts >= 5 && r.failedStarts < 400, `backoff limits the retries (${r.failedStarts} over a day)`);
  });

  test('same input and seed: identical figures; another seed: other samples', () => {
    const jobs = Array.from({ length: 300 }, (_, i) => job(i * 7_000, 20_000 + ((i * 7919) % 60_000)));
    const pools = () => [simPool({ maxRunners: 8 }, { latency: { kind: 'lognormal', median: 8_000, p95: 30_000 }, startFailureRate: 0.1 })];
    const a = JSON.stringify(run(pools(), jobs));
    assert.equal(JSON.stringify(run(pools(), jobs)), a);
    assert.notEqual(JSON.stringify(run(pools(), jobs, { seed: 2 })), a);
  });
});

describe('traces', () => {
  test('JSONL, CSV and GitHub workflow jobs', () => {
    const jsonl = parseTrace('{"arrival":"2026-01-05T00:00:05Z","pool":"ci","duration":"2m","wait":1500}\n\n{"arrival":1767571200000,"labels":["self-hosted","linux"],"duration":1000,"outcome":"failed"}\n', 'jsonl');
    assert.deepEqual(jsonl.jobs.map((j) => [j.arrival, j.pool, j.duration, j.outcome, j.wait]), [
      [1767571200000, undefined, 1000, 'failed', undefined],
      [Date.parse('2026-01-05T00:00:05Z'), 'ci', 120_000, 'succeeded', 1500],
    ]);
    const csv = parseTrace('arrival,pool,labels,duration,outcome\n2026-01-05T00:00:00Z,ci,"linux;x64",90s,succeeded\r\n2026-01-05T00:01:00Z,ci,,1000,"fail, ""hard"""\n', 'csv');
    assert.deepEqual(csv.jobs.map((j) => [j.labels, j.duration, j.outcome]), [[['linux', 'x64'], 90_000, 'succeeded'], [[], 1000, 'fail, "hard"']]);
    const gh = parseTrace(
      JSON.stringify({ total_count: 2, jobs: [
        { id: 1, status: 'completed', conclusion: 'success', created_at: '2026-01-05T10:00:00Z', started_at: '2026-01-05T10:00:20Z', completed_at: '2026-01-05T10:05:20Z', labels: ['self-hosted', 'linux'] },
        { id: 2, status: 'queued', conclusion: null, created_at: '2026-01-05T10:01:00Z', started_at: null, completed_at: null, labels: ['self-hosted'] },
      ] }),
      'github',
    );
    assert.deepEqual(gh.jobs.map((j) => [j.labels, j.duration, j.wait, j.outcome]), [[['self-hosted', 'linux'], 300_000, 20_000, 'success']]);
    assert.equal(gh.skipped, 1);
  });

  test('bad records are named by line and field', () => {
    assert.throws(() => parseTrace('{"arrival":"soon","pool":"ci","duration":1}\n', 'jsonl', 't.jsonl'), /t\.jsonl:1: arrival must be an ISO time/);
    assert.throws(() => parseTrace('{"arrival":1,"pool":"ci","duration":1}\nnot json\n', 'jsonl', 't.jsonl'), /t\.jsonl:2: not a JSON object/);
    assert.throws(() => parseTrace('arrival,pool,duration\n1,ci,ten\n', 'csv', 't.csv'), /t\.csv:2: duration must be a duration/);
    assert.throws(() => parseTrace('pool,duration\nci,1\n', 'csv', 't.csv'), /t\.csv:1: the first row must name the columns/);
    assert.throws(() => parseTrace('{"arrival":1,"duration":1}\n', 'jsonl', 't.jsonl'), /needs a pool or labels/);
  });
});

describe('runyard simulate (CLI)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runyard-sim-'));
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  after(() => rmSync(dir, { recursive: true, force: true }));
  const lines: string[] = [];
  for (let i = 0; i < 400; i++) lines.push(JSON.stringify({ arrival: new Date(T0 + 7 * 3_600_000 + i * 45_000).toISOString(), pool: 'ci', duration: 60_000 + ((i * 7919) % 240_000) }));
  const trace = file('trace.jsonl', lines.join('\n') + '\n');
  const pools = file('pools.yaml', 'pools:\n  - name: ci\n    class: small\n    maxRunners: 20\n    idleTimeout: 5m\n');
  const spec = file(
    'sim.yaml',
    'startLatency: { kind: lognormal, median: 15s, p95: 40s }\ncostPerHour: { small: 0.5 }\npolicies:\n  - name: current\n  - name: warm\n    pools: { ci: { minIdle: 3 } }\n',
  );

  test('a side-by-side table; JSON and HTML byte-identical across runs', async () => {
    const table = await runCli(['simulate', trace, '--config', pools, '--spec', spec, '--no-progress']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^\s+current\s+warm$/m);
    for (const row of ['wait p50', 'wait p95', 'wait p99', 'wait max', 'over SLO (30.0s)', 'runner-hours', 'idle runner-hours', 'cost', 'peak runners']) assert.match(table.stdout, new RegExp(`^${row.replace(/[()]/g, '\\$&')}\\s`, 'm'), row);
    const outs = [];
    for (const n of [1, 2]) {
      const r = await runCli(['simulate', trace, '--config', pools, '--spec', spec, '--json', '--html', join(dir, `r${n}.html`), '--no-progress']);
      assert.equal(r.code, 0, r.stderr);
      outs.push({ json: r.stdout, html: readFileSync(join(dir, `r${n}.html`), 'utf8') });
    }
    assert.equal(outs[0]!.json, outs[1]!.json);
    assert.equal(outs[0]!.html, outs[1]!.html);
    const j = JSON.parse(outs[0]!.json);
    assert.deepEqual(j.policies.map((p: any) => p.name), ['current', 'warm']);
    const [cur, warm] = j.policies;
    assert.equal(cur.jobs, 400);
    assert.ok(warm.wait.p95 <= cur.wait.p95, 'warm runners do not make waits longer');
    assert.ok(warm.idleRunnerHours > cur.idleRunnerHours, 'and cost idle hours');
    assert.equal(j.policies[1].config[0].minIdle, 3);
  });

  test('--set adds a policy; --suggest finds a config meeting the SLO', async () => {
    const r = await runCli(['simulate', trace, '--config', pools, '--spec', spec, '--set', 'ci.minIdle=2', '--set', 'idleTimeout=20m', '--json', '--no-progress']);
    assert.equal(r.code, 0, r.stderr);
    const cfg = JSON.parse(r.stdout).policies.at(-1).config[0];
    assert.deepEqual([cfg.minIdle, cfg.idleTimeout], [2, 1_200_000]);
    // a job every 6 minutes, idleTimeout 1m: today every job pays a cold start
    const sparse = file('sparse.jsonl', Array.from({ length: 60 }, (_, i) => JSON.stringify({ arrival: T0 + i * 360_000, pool: 'ci', duration: 30_000 })).join('\n'));
    const quick = file('quick.yaml', '- { name: ci, class: small, maxRunners: 4, idleTimeout: 1m }\n');
    const s = await runCli(['simulate', sparse, '--config', quick, '--spec', spec, '--suggest', '--slo', 'p95=5s', '--json', '--no-progress'], { timeoutMs: 120_000 });
    assert.equal(s.code, 0, s.stderr);
    const [found] = JSON.parse(s.stdout);
    assert.ok(found.current.figures.wait.p95 > 5_000, `the current config misses the SLO (p95 ${found.current.figures.wait.p95} ms)`);
    assert.ok(found.best, 'a config meets p95 <= 5 s');
    assert.ok(found.best.figures.wait.p95 <= 5_000);
    assert.ok(found.best.fields.minIdle > 0 || found.best.fields.minIdleSchedule || found.best.fields.idleTimeout >= 360_000, 'it keeps a runner warm between jobs');
    const text = await runCli(['simulate', sparse, '--config', quick, '--spec', spec, '--suggest', '--slo', 'p95=5s', '--no-progress'], { timeoutMs: 120_000 });
    assert.match(text.stdout, /^pool ci: cheapest config with p95 wait <= 5\.0s/m);
    assert.match(text.stdout, /^  - name: ci\n    minIdle: \d+\n    idleTimeout: /m);
  });

  test('bad input exits 2 naming what is wrong', async () => {
    const cases: [string[], RegExp][] = [
      [['simulate'], /give a trace file/],
      [['simulate', join(dir, 'missing.jsonl')], /cannot read .*missing\.jsonl: no such file/],
      [['simulate', trace, '--config', pools, '--set', 'ci.minIdle=50'], /pool ci: minIdle: minIdle \(50\) exceeds maxRunners \(20\)/],
      [['simulate', trace, '--config', pools, '--set', 'nosuch.minIdle=1'], /pools\.nosuch: no such pool/],
      [['simulate', trace], /pool ci, which the pools given do not define/],
      [['simulate', trace, '--config', pools, '--start-latency', 'lognormal:20s'], /--start-latency: invalid start latency/],
      [['simulate', trace, '--config', pools, '--suggest'], /--suggest needs --slo/],
      [['simulate', trace, '--config', pools, '--slo', 'p90=3s', '--suggest'], /--slo p90=3s: use p50=, p95=, p99= or max=/],
      [['simulate', trace, '--config', pools, '--spec', file('bad.yaml', 'startLatency: { kind: fixed, value: soon }\n')], /bad\.yaml: startLatency\.value: invalid duration/],
      [['simulate', file('bad.jsonl', '{"arrival":1,"pool":"ci"}\n'), '--config', pools], /bad\.jsonl:1: duration is missing/],
    ];
    for (const [args, pattern] of cases) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern, args.join(' '));
      assert.equal(r.stdout, '');
    }
  });

  test('GitHub history is routed to pools by labels; hosted jobs left out', async () => {
    const gh = file('gh.json', JSON.stringify({ jobs: [
      { created_at: '2026-01-05T10:00:00Z', started_at: '2026-01-05T10:00:30Z', completed_at: '2026-01-05T10:02:00Z', conclusion: 'success', labels: ['self-hosted', 'linux'] },
      { created_at: '2026-01-05T10:00:10Z', started_at: '2026-01-05T10:00:12Z', completed_at: '2026-01-05T10:03:00Z', conclusion: 'success', labels: ['ubuntu-latest'] },
    ] }));
    const ghPools = file('gh-pools.yaml', '- { name: linux, labels: [linux], ephemeral: true }\n');
    const r = await runCli(['simulate', gh, '--config', ghPools, '--start-latency', '7s', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.jobs, 1);
    assert.equal(j.policies[0].wait.max, 7_000);
    assert.equal(j.recorded.max, 30_000, 'the wait GitHub recorded');
    assert.match(r.stderr, /1 jobs were for GitHub-hosted runners/);
  });
});

describe('--from-store (PostgreSQL)', () => {
  let store: Awaited<ReturnType<typeof openTestDb>>;
  before(async () => {
    store = await openTestDb('postgres');
    const now = Date.now();
    await store.db.query(`insert into pools (name, config, config_hash, source, created_at, updated_at) values ('ci', $1, 'h', 'api', now(), now())`, [
      JSON.stringify(poolSchema.parse({ name: 'ci', maxRunners: 3 })),
    ]);
    // three jobs an hour ago, run for 60 s each; two runners that took 4 s and 6 s to register
    for (let i = 0; i < 3; i++) {
      const at = now - 3_600_000 + i * 1_000;
      await store.db.query(
        `insert into jobs (pool, state, commands, timeout_ms, attempt, created_at, queued_at, claimed_at, started_at, finished_at) values ('ci', 'succeeded', '["true"]', 60000, 1, $1, $1, $2, $2, $3)`,
        [new Date(at), new Date(at + 5_000), new Date(at + 65_000)],
      );
    }
    await store.db.query(`insert into jobs (pool, state, commands, timeout_ms, created_at, queued_at, finished_at) values ('ci', 'cancelled', '["true"]', 60000, $1, $1, $1)`, [new Date(now - 1_800_000)]);
    await store.db.query(`insert into jobs (pool, state, commands, timeout_ms, created_at, queued_at) values ('ci', 'succeeded', '["true"]', 60000, $1, $1)`, [new Date(now - 7 * 86_400_000)]);
    for (const [i, ms] of [4_000, 6_000].entries())
      await store.db.query(`insert into runners (id, pool, name, state, provider, slots, created_at, registered_at, state_changed_at) values (gen_random_uuid(), 'ci', $1, 'terminated', 'process', 1, $2, $3, $3)`, [
        `r${i}`,
        new Date(now - 3_600_000),
        new Date(now - 3_600_000 + ms),
      ]);
  });
  after(() => store.close());

  test('reads the window, fits the start latency from the runners, exports the trace', async () => {
    const out = join(tmpdir(), `runyard-sim-export-${process.pid}.jsonl`);
    const r = await runCli(['simulate', '--from-store', '--since', '24h', '--json', '--export-trace', out], { env: { RUNYARD_DATABASE_URL: store.url } });
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.jobs, 3, 'the cancelled job never ran; the old one is outside the window');
    assert.match(j.startLatency.ci, /fitted from 2 starts/);
    assert.equal(j.recorded.max, 5_000);
    assert.deepEqual(j.policies[0].config.map((p: any) => p.name), ['ci']);
    const max = j.policies[0].wait.max;
    assert.ok(max > 2_000 && max <= 6_000, `waits come from the fitted 4 s and 6 s starts, not the 2 s default (max ${max})`);
    assert.equal(readFileSync(out, 'utf8').trim().split('\n').length, 3);
    rmSync(out, { force: true });
  });
});

describe('HTML report in Chromium', () => {
  test('charts of queue depth and runners by state, with no script and no outside request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runyard-sim-html-'));
    const lines = Array.from({ length: 600 }, (_, i) => JSON.stringify({ arrival: T0 + Math.floor(i / 50) * 600_000 + (i % 50) * 2_000, pool: 'ci', duration: 120_000 }));
    writeFileSync(join(dir, 't.jsonl'), lines.join('\n'));
    writeFileSync(join(dir, 'p.yaml'), '- { name: ci, maxRunners: 12, idleTimeout: 2m }\n');
    const r = await runCli(['simulate', join(dir, 't.jsonl'), '--config', join(dir, 'p.yaml'), '--set', 'minIdle=4', '--start-latency', 'lognormal:20s:60s', '--html', join(dir, 'report.html')]);
    assert.equal(r.code, 0, r.stderr);
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/, 'self-contained');
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
      const problems = watchConsole(page);
      const requests: string[] = [];
      page.on('request', (q) => requests.push(q.url()));
      await page.goto(pathToFileURL(join(dir, 'report.html')).href);
      assert.equal(await page.locator('section.policy').count(), 2);
      assert.equal(await page.locator('svg[data-chart="queue"] polyline').count(), 2);
      const busy = page.locator('section[data-policy="current"] svg[data-chart="runners"] polygon[data-state="busy"]');
      const box = await busy.boundingBox();
      assert.ok(box && box.height > 20 && box.width > 300, `the busy area is drawn (${JSON.stringify(box)})`);
      const idleWarm = await page.locator('section[data-policy="with --set"] svg[data-chart="runners"] polygon[data-state="idle"]').boundingBox();
      assert.ok(idleWarm && idleWarm.height > 5, 'the warm policy shows idle runners');
      assert.match((await page.locator('#figures').textContent()) ?? '', /wait p95/);
      await screenshot(page, 'simulate-report');
      assert.deepEqual(problems, []);
      assert.deepEqual(requests.filter((u) => !u.startsWith('file:')), []);
    } finally {
      await browser.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
