/*
 * 7. Memory of the server: a real `runyard up` process (the product as users run it), its RSS
 * read from /proc — idle, with 1,000 runners registered (control channels open), and after
 * 100,000 jobs run through the HTTP API. The jobs are run by simulated runners in a child
 * process speaking the whole runner protocol (claim, start, logs, result) without spawning
 * processes, so 100,000 jobs take minutes rather than an hour; the server does all of its
 * per-job work. RSS is sampled every 10% of the jobs, to show any growth.
 */
import { LoadProcess } from '../lib/child.js';
import { UpProcess } from '../lib/upprocess.js';
import { ADMIN_TOKEN } from '../lib/server.js';
import { createBenchDatabase, tupleStats } from '../lib/pg.js';
import { fmt, fmtBytes, median } from '../lib/stats.js';
import { runSection, type Row } from '../lib/section.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** RSS sampled a few times over a couple of seconds: the median (GC comes and goes). */
async function steadyRss(up: UpProcess): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    await sleep(400);
    xs.push(up.rss());
  }
  return median(xs);
}

await runSection('memory', '7. Server memory (`runyard up` process)', async ({ quick, log }) => {
  const runners = quick ? 200 : 1000;
  const jobs = Number(process.env.BENCH_MEMORY_JOBS ?? (quick ? 10_000 : 100_000));
  const rows: Row[] = [];
  const trend: (string | number)[][] = [];

  // Idle on the embedded store (what `npx runyard up` runs): the first start runs initdb in a
  // fresh data dir; the restart opens the existing one (the steady state).
  {
    const yaml = 'pools:\n  - { name: sim, maxRunners: 10 }\n';
    const first = await new UpProcess({ yaml, keepDataDir: true }).start();
    const dir = first.dataDir;
    try {
      await sleep(2000);
      rows.push({ metric: 'RSS idle, embedded PGlite store, first start (initdb of a fresh data dir)', value: (await steadyRss(first)) / MiB, unit: 'MiB' });
    } finally {
      await first.stop();
    }
    const again = await new UpProcess({ yaml, dataDir: dir }).start();
    try {
      await sleep(2000);
      rows.push({ key: true, metric: 'RSS idle, embedded PGlite store, restart on the existing data dir', value: (await steadyRss(again)) / MiB, unit: 'MiB' });
    } finally {
      await again.stop();
    }
  }

  const db = await createBenchDatabase('mem');
  const up = await new UpProcess({ dbUrl: db.url, yaml: 'pools:\n  - { name: sim, maxRunners: 10 }\n' }).start();
  const load = new LoadProcess('sim-runners.ts');
  try {
    await load.next('ready');
    await sleep(2000);
    const idle = await steadyRss(up);
    rows.push({ key: true, metric: 'RSS idle, PostgreSQL store', value: idle / MiB, unit: 'MiB' });
    const reg = await load.request<any>({ type: 'register', url: up.url, adminToken: ADMIN_TOKEN, pool: 'sim', count: runners, concurrency: 16 }, 'registered', 600_000);
    const opened = await load.request<any>({ type: 'sse-open', count: runners, concurrency: 100, timeoutMs: 120_000 }, 'sse-opened', 300_000);
    // Every runner heartbeats every 20 s from now on (agents do every 30 s), so none goes offline.
    await load.request({ type: 'keepalive', intervalMs: 20_000 }, 'keepalive-started');
    const withRunners = await steadyRss(up);
    rows.push({ key: true, metric: `RSS with ${fmt(reg.count)} runners registered (${fmt(opened.open)} control channels open)`, value: withRunners / MiB, unit: 'MiB', note: `${fmtBytes((withRunners - idle) / Math.max(1, opened.open))} per runner` });
    log(`idle ${fmtBytes(idle)}, with runners ${fmtBytes(withRunners)}; running ${fmt(jobs)} jobs`);

    const t0 = Date.now();
    let submitted = 0;
    let done = 0;
    const step = Math.max(1000, Math.round(jobs / 10));
    let nextMark = step;
    let lastProgressAt = Date.now();
    load.child.on('message', (m: any) => {
      if (m?.type === 'work-progress') {
        done = m.done;
        lastProgressAt = Date.now();
      }
    });
    const working = load.request<any>({ type: 'work', runners: 32, slots: 8, jobs, progressEvery: 500 }, 'work-done', 3_600_000);
    working.catch(() => {}); // awaited below; a failure is also caught by the exit checks in the loop
    trend.push([0, +(withRunners / MiB).toFixed(1), '']);
    while (done < jobs) {
      while (submitted < jobs && submitted - done < 5000) {
        const k = Math.min(1000, jobs - submitted);
        await up.http.ok('POST', '/api/v1/jobs/batch', { jobs: Array.from({ length: k }, () => ({ pool: 'sim', command: 'true' })) });
        submitted += k;
      }
      if (done >= nextMark) {
        trend.push([done, +(up.rss() / MiB).toFixed(1), Math.round(done / ((Date.now() - t0) / 1000))]);
        nextMark += step;
      }
      await sleep(50);
      if (load.child.exitCode !== null) throw new Error(`simulated runners exited\n${load.stderr.slice(-2000)}`);
      if (Date.now() - lastProgressAt > 60_000) throw new Error(`no job finished for 60 s (${done} of ${jobs} done)\n${up.output.slice(-2000)}`);
      if (up.child.exitCode !== null) throw new Error(`runyard up exited\n${up.output.slice(-2000)}`);
    }
    const w = await working;
    const rate = w.done / ((Date.now() - t0) / 1000);
    const busy = await steadyRss(up);
    // V8 collects and shrinks the heap once the process has been idle a while.
    await sleep(10_000);
    const after = await steadyRss(up);
    trend.push(['end, 10 s idle', +(after / MiB).toFixed(1), '']);
    rows.push({ key: true, metric: `RSS after ${fmt(w.done)} jobs (runners still connected, 10 s idle)`, value: after / MiB, unit: 'MiB', note: `${fmtBytes(busy)} right after the last job; ${w.errors} protocol errors${w.firstError ? ` (first: ${w.firstError})` : ''}` });
    // Growth while running, after the first tenth (least-squares slope of the samples): a leak
    // shows as a steady positive slope; a heap that has found its size as ~0.
    const pts = trend.filter((t) => typeof t[0] === 'number' && (t[0] as number) >= step).map((t) => [t[0] as number, t[1] as number] as const);
    const mx = pts.reduce((a, p) => a + p[0], 0) / pts.length;
    const my = pts.reduce((a, p) => a + p[1], 0) / pts.length;
    const slope = pts.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0) / Math.max(1, pts.reduce((a, p) => a + (p[0] - mx) ** 2, 0));
    rows.push({ key: true, metric: `RSS trend while the jobs ran, from ${fmt(step)} jobs on (slope of the samples below)`, value: slope * 10_000, unit: 'MiB per 10,000 jobs', note: pts.length < 3 ? 'too few samples' : '' });
    rows.push({ metric: 'jobs/s through the HTTP API, simulated runners (no job processes)', value: rate, unit: 'jobs/s', note: '32 runners × 8 slots; per job: claim share, start, one log batch, result' });
    const tup = await tupleStats(db.url, 'jobs');
    rows.push({ metric: 'dead tuples on jobs at the end', value: tup.dead, unit: 'tuples', note: `${fmt(tup.live)} live, ${tup.autovacuums} autovacuum runs, ${fmt(tup.updates)} updates of which ${fmt(tup.hotUpdates)} HOT, table+indexes ${fmtBytes(tup.sizeBytes)}` });
    await load.request({ type: 'sse-close' }, 'sse-closed');
    return {
      rows,
      notes: [
        'Server: `node bin/runyard.js up` as its own process (logging at info to its stdout pipe), RSS from /proc/<pid>/stat, median of 5 samples over 2 s (no forced GC: what an operator sees; the figure after the jobs is taken after 10 s idle, when V8 has shrunk its heap).',
        `Runners: ${fmt(runners)} simulated runners registered over HTTP, each with its control channel (SSE) open and heartbeating every 20 s, from a child process. Jobs: ${fmt(jobs)} \`true\` jobs submitted in batches of 1,000 (kept ≤ 5,000 ahead) and run by 32 of those runners (8 slots each) through the runner protocol without spawning processes.`,
      ],
      details: [{ title: 'RSS while the jobs ran', headers: ['jobs finished', 'RSS MiB', 'jobs/s so far'], rows: trend }],
    };
  } finally {
    await load.stop();
    await up.stop();
    await db.drop();
  }
});
