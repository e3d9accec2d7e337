/*
 * `runyard agent` end to end: real agent processes (node bin/runyard.js agent, built dist/)
 * against a real server on loopback over PostgreSQL. Build first:
 *   npx tsc -p . && node scripts/copy-assets.mjs && node --import tsx --test test/agent.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import * as tar from 'tar';
import { Agent } from '../src/agent/agent.js';
import { silentLogger } from '../src/lib/logger.js';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { createPgDatabase } from './helpers/db.js';
import { allLogs, getJob, isAlive, killAllAgents, killLeftoverJobs, makeZip, poolWithToken, pushArtifact, startAgent, submit, TcpProxy, waitForJob } from './helpers/agent.js';

const SERVER_CONFIG = { runner: { heartbeatInterval: 300, pingInterval: 300 } };
let t: TestServer;
let tmp: string;

before(async () => {
  t = await startTestServer({ store: 'postgres', loops: false, config: SERVER_CONFIG });
  tmp = mkdtempSync(join(tmpdir(), 'runyard-agent-test-'));
});

after(async () => {
  await killAllAgents();
  await t?.close();
  for (const d of ['phoenix-work']) killLeftoverJobs(join(tmp, d));
  rmSync(tmp, { recursive: true, force: true });
});

describe('runyard agent', () => {
  test('runs jobs in parallel up to maxJobsPerRunner, with payload in, output out and exit codes', async () => {
    const gate = join(tmp, 'parallel-gate');
    const token = await poolWithToken(t, { name: 'parallel', maxJobsPerRunner: 3, env: { POOL_VAR: 'from-pool' }, setup: ['echo setup-ran > marker.txt'] });
    const agent = startAgent({ server: t.url, token });
    const runnerId = await agent.runnerId();
    await agent.waitForLog('ready for jobs');

    // 5 jobs that each hold a slot until the gate file appears.
    const hold = `touch "${tmp}/parallel-started-$RUNYARD_JOB_ID"; while [ ! -f "${gate}" ]; do sleep 0.05; done`;
    const jobs = [];
    for (let i = 0; i < 5; i++) jobs.push(await submit(t, { pool: 'parallel', command: hold }));
    const started = () => readdirSync(tmp).filter((f) => f.startsWith('parallel-started-')).length;
    await waitFor('3 jobs to run', () => started() === 3);
    // Two more heartbeats: the runner had every chance to claim more, and did not.
    const beats = async () => (await t.api('GET', `/api/v1/runners/${runnerId}`)).body.runner.lastHeartbeatAt;
    const b0 = await beats();
    await waitFor('a heartbeat', async () => (await beats()) !== b0);
    const b1 = await beats();
    await waitFor('another heartbeat', async () => (await beats()) !== b1);
    const states = await Promise.all(jobs.map((j) => getJob(t, j.id).then((x) => x.state)));
    assert.equal(started(), 3);
    assert.equal(states.filter((s) => s === 'queued').length, 2, `states: ${states}`);
    assert.equal(states.filter((s) => s === 'running' || s === 'claimed').length, 3, `states: ${states}`);
    writeFileSync(gate, '');
    for (const j of jobs) assert.equal((await waitForJob(t, j.id)).state, 'succeeded');
    assert.equal(started(), 5);

    // Payload in, output JSON out, env from pool and job, setup ran once in RUNYARD_SETUP_DIR.
    const io = await submit(t, {
      pool: 'parallel',
      payload: { n: 21, words: ['a', 'b'] },
      env: { JOB_VAR: 'from-job' },
      commands: [
        'n=$(sed -e \'s/.*"n":\\([0-9]*\\).*/\\1/\' "$RUNYARD_PAYLOAD")',
        'setup=$(cat "$RUNYARD_SETUP_DIR/marker.txt")',
        'printf \'{"double":%d,"pool":"%s","job":"%s","setup":"%s","id":"%s","cwd":"%s"}\' $((n*2)) "$POOL_VAR" "$JOB_VAR" "$setup" "$RUNYARD_JOB_ID" "$PWD" > "$RUNYARD_OUTPUT"',
      ],
    });
    const done = await waitForJob(t, io.id);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.exitCode, 0);
    assert.deepEqual({ ...done.output, cwd: undefined }, { double: 42, pool: 'from-pool', job: 'from-job', setup: 'setup-ran', id: String(io.id), cwd: undefined });
    assert.equal(done.output.cwd, join(agent.workDir, `${io.id}-1`, 'work'));
    assert.equal(existsSync(join(agent.workDir, `${io.id}-1`)), false, 'job dir removed after the job');

    // Exit codes: the first failing command stops the job; later commands do not run.
    const fail = await submit(t, { pool: 'parallel', commands: ['echo one', 'exit 7', `touch "${tmp}/never"`] });
    const failed = await waitForJob(t, fail.id);
    assert.equal(failed.state, 'failed');
    assert.equal(failed.exitCode, 7);
    assert.equal(existsSync(join(tmp, 'never')), false);

    // Invalid output JSON: the exit code stands, the reason is recorded.
    const bad = await submit(t, { pool: 'parallel', command: 'echo "{not json" > "$RUNYARD_OUTPUT"; exit 3' });
    const badDone = await waitForJob(t, bad.id);
    assert.equal(badDone.exitCode, 3);
    assert.match(badDone.error, /RUNYARD_OUTPUT is not valid JSON/);

    // A warm runner starts a submitted job within milliseconds.
    const warm = await submit(t, { pool: 'parallel', command: 'true' });
    const w = await waitForJob(t, warm.id);
    const latency = Date.parse(w.startedAt) - Date.parse(w.createdAt);
    console.log(`warm start latency: ${latency}ms (created -> running)`);
    assert.ok(latency < 500, `warm start took ${latency}ms`);
  });

  test('streams 100,000 lines completely and in order, including very long and unterminated lines', async () => {
    const token = await poolWithToken(t, { name: 'loud' });
    const agent = startAgent({ server: t.url, token });
    await agent.waitForLog('ready for jobs');
    const started = Date.now();
    const job = await submit(t, {
      pool: 'loud',
      commands: ['seq 1 100000', 'echo on-stderr >&2', "head -c 100000 /dev/zero | tr '\\0' x; echo", 'printf tail-without-newline'],
    });
    const done = await waitForJob(t, job.id, undefined, 30_000);
    assert.equal(done.state, 'succeeded');
    const lines = await allLogs(t, job.id);
    const elapsed = Date.now() - started;
    const out = lines.filter((l) => l.s === 'o');
    const numbers = out.slice(0, 100_000).map((l) => l.m);
    for (let i = 0; i < 100_000; i++) if (numbers[i] !== String(i + 1)) assert.fail(`line ${i + 1} is ${JSON.stringify(numbers[i])}`);
    const long = out.slice(100_000, -1);
    assert.ok(long.length >= 4 && long.every((l) => l.m.length <= 32_768), `long line in ${long.length} pieces`);
    assert.equal(long.map((l) => l.m).join(''), 'x'.repeat(100_000));
    assert.equal(out.at(-1)!.m, 'tail-without-newline');
    assert.deepEqual(lines.filter((l) => l.s === 'e').map((l) => l.m), ['on-stderr']);
    for (let i = 1; i < lines.length; i++) {
      assert.ok(lines[i]!.seq >= lines[i - 1]!.seq, 'batches in order');
      assert.ok(lines[i]!.t >= lines[i - 1]!.t, 'timestamps never go back');
    }
    const batches = new Set(lines.map((l) => l.seq)).size;
    console.log(`100,000 lines: ${lines.length} log lines in ${batches} batches, submit -> all logs read back in ${elapsed}ms`);
  });

  test('cancel and timeout kill the whole process tree; SIGKILL follows an ignored SIGTERM', async () => {
    const token = await poolWithToken(t, { name: 'killer', maxJobsPerRunner: 2 });
    const agent = startAgent({ server: t.url, token, gracePeriod: '1s' });
    await agent.waitForLog('ready for jobs');
    const tree = (file: string) =>
      `sleep 1000 & echo $! >> ${file}; sh -c 'sleep 1000 & echo $! >> ${file}; wait' & echo $! >> ${file}; echo tree-started; wait`;
    const pidsOf = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map(Number) : []);

    const cancelPids = join(tmp, 'cancel-pids');
    const c = await submit(t, { pool: 'killer', command: tree(cancelPids) });
    const timeoutPids = join(tmp, 'timeout-pids');
    // The shell ignores SIGTERM, and so do its children (ignored signals are inherited).
    const tj = await submit(t, { pool: 'killer', timeout: '1500ms', command: `trap '' TERM; ${tree(timeoutPids)}` });
    await waitFor('cancel tree started', () => pidsOf(cancelPids).length === 3);
    await waitFor('timeout tree started', () => pidsOf(timeoutPids).length === 3);
    assert.ok([...pidsOf(cancelPids), ...pidsOf(timeoutPids)].every(isAlive));

    const r = await t.api('POST', `/api/v1/jobs/${c.id}/cancel`);
    assert.equal(r.status, 200);
    const cancelled = await waitForJob(t, c.id);
    assert.equal(cancelled.state, 'cancelled');
    await waitFor('cancelled tree gone', () => pidsOf(cancelPids).every((p) => !isAlive(p)), 3000);

    const timedOut = await waitForJob(t, tj.id);
    assert.equal(timedOut.state, 'timed_out');
    assert.match(timedOut.error, /timed out after 1500ms/);
    await waitFor('timed-out tree gone', () => pidsOf(timeoutPids).every((p) => !isAlive(p)), 3000);
    const ran = Date.parse(timedOut.finishedAt) - Date.parse(timedOut.startedAt);
    // 1.5 s timeout, then SIGTERM is ignored and SIGKILL comes 1 s later.
    assert.ok(ran >= 2400, `timed-out job ended after ${ran}ms, before its SIGKILL grace`);
    const logs = (await allLogs(t, tj.id)).map((l) => l.m).join('\n');
    assert.match(logs, /timed out after 1500ms; sending SIGTERM/);
    console.log(`timeout 1500ms + grace 1000ms: job ended ${ran}ms after start`);
  });

  test('secrets reach the job but never the database, the API or any log', async () => {
    const secret = `hunter2-${Date.now().toString(36)}-s3cr3t`;
    const token = await poolWithToken(t, { name: 'vault' });
    const agent = startAgent({ server: t.url, token });
    await agent.waitForLog('ready for jobs');
    const job = await submit(t, {
      pool: 'vault',
      secrets: { MY_SECRET: secret },
      commands: [
        'echo "the secret is $MY_SECRET"',
        'echo "$MY_SECRET" >&2',
        'printf %s "$MY_SECRET" | sha256sum | cut -d" " -f1',
        'env',
        'printf \'{"leak":"%s","nested":{"k":"%s"}}\' "$MY_SECRET" "$MY_SECRET" > "$RUNYARD_OUTPUT"',
      ],
    });
    const done = await waitForJob(t, job.id);
    assert.equal(done.state, 'succeeded');
    const lines = await allLogs(t, job.id);
    const text = lines.map((l) => l.m);
    assert.ok(text.includes(createHash('sha256').update(secret).digest('hex')), 'the job saw the decrypted secret');
    assert.ok(text.includes('the secret is ***'));
    assert.ok(lines.some((l) => l.s === 'e' && l.m === '***'));
    assert.ok(text.includes('MY_SECRET=***'));
    assert.deepEqual(done.output, { leak: '***', nested: { k: '***' } });
    assert.ok(!text.some((m) => m.startsWith('RUNYARD_REGISTRATION_TOKEN')), "the agent's token is not in the job's env");

    // The secret inside an unparsable output: the error names the problem, not the secret. (It
    // exits 1: the server keeps no error text for succeeded jobs.)
    const bad = await submit(t, { pool: 'vault', secrets: { MY_SECRET: secret }, command: 'echo "$MY_SECRET oops" > "$RUNYARD_OUTPUT"; exit 1' });
    const badDone = await waitForJob(t, bad.id);
    assert.match(badDone.error, /RUNYARD_OUTPUT is not valid JSON/);

    for (const table of ['jobs', 'job_logs', 'events', 'runners', 'tokens']) {
      const rows = await t.server.db.query<{ row: string }>(`select x::text as row from ${table} x`);
      assert.ok(rows.length > 0);
      assert.ok(!rows.some((r) => r.row.includes(secret)), `secret found in table ${table}`);
    }
    for (const path of [`/api/v1/jobs/${job.id}`, `/api/v1/jobs/${job.id}/logs`, `/api/v1/jobs/${job.id}/events`, `/api/v1/jobs/${bad.id}`, '/api/v1/jobs', '/api/v1/events', '/api/v1/runners']) {
      const r = await t.api('GET', path);
      assert.equal(r.status, 200, path);
      assert.ok(!JSON.stringify(r.body).includes(secret), `secret in ${path}`);
    }
    assert.ok(!agent.stderr.includes(secret), 'secret in the agent log');
    assert.ok(!agent.stderr.includes(token), 'registration token in the agent log');
  });

  test('distributions are extracted into each job; zip-slip and escaping symlinks are refused', async () => {
    // A good tar.gz, with a symlink that stays inside.
    const src = join(tmp, 'dist-src');
    mkdirSync(join(src, 'bin'), { recursive: true });
    writeFileSync(join(src, 'hello.txt'), 'hello from the distribution\n');
    writeFileSync(join(src, 'bin', 'tool.sh'), '#!/bin/sh\necho tool ran\n', { mode: 0o755 });
    symlinkSync('hello.txt', join(src, 'link.txt'));
    const good = join(tmp, 'good.tar.gz');
    await tar.c({ gzip: true, file: good, cwd: src }, ['hello.txt', 'bin', 'link.txt']);
    await pushArtifact(t, 'good.tar.gz', readFileSync(good));

    // zip-slip: an entry climbing out to a path we can check for afterwards.
    const slipTarget = join(tmp, 'zip-slipped.txt');
    await pushArtifact(t, 'slip.zip', makeZip([{ name: 'ok.txt', data: 'fine' }, { name: '../'.repeat(30) + slipTarget.slice(1), data: 'pwned' }]));

    // A symlink to a directory outside, then a file written "through" it.
    const outside = join(tmp, 'outside');
    mkdirSync(outside);
    const evil = join(tmp, 'evil-src');
    mkdirSync(evil);
    symlinkSync(outside, join(evil, 'escape'));
    const evilTar = join(tmp, 'evil.tar.gz');
    await tar.c({ gzip: true, file: evilTar, cwd: evil }, ['escape']);
    await pushArtifact(t, 'evil.tar.gz', readFileSync(evilTar));

    const pools = [
      { name: 'dist-good', distribution: 'good.tar.gz' },
      { name: 'dist-slip', distribution: 'slip.zip' },
      { name: 'dist-evil', distribution: 'evil.tar.gz' },
    ];
    const agents = [];
    for (const p of pools) agents.push(startAgent({ server: t.url, token: await poolWithToken(t, p) }));
    await Promise.all(agents.map((a) => a.waitForLog('ready for jobs')));

    const ok = await submit(t, { pool: 'dist-good', commands: ['cat hello.txt link.txt', './bin/tool.sh'] });
    const slip = await submit(t, { pool: 'dist-slip', command: `touch ${tmp}/slip-ran` });
    const symlinkJob = await submit(t, { pool: 'dist-evil', command: `touch ${tmp}/evil-ran; echo x > escape/pwned.txt` });
    const [okDone, slipDone, evilDone] = await Promise.all([ok, slip, symlinkJob].map((j) => waitForJob(t, j.id)));

    assert.equal(okDone.state, 'succeeded', okDone.error);
    const okLogs = (await allLogs(t, ok.id)).filter((l) => l.s === 'o').map((l) => l.m);
    assert.deepEqual(okLogs, ['hello from the distribution', 'hello from the distribution', 'tool ran']);
    assert.equal(agents[0]!.count('distribution downloaded'), 1);

    assert.equal(slipDone.state, 'failed');
    assert.match(slipDone.error, /archive refused/);
    assert.equal(existsSync(slipTarget), false);
    assert.equal(existsSync(join(tmp, 'slip-ran')), false, 'the job did not run');

    assert.equal(evilDone.state, 'failed');
    assert.match(evilDone.error, /archive refused: symlink "escape" points outside/);
    assert.deepEqual(readdirSync(outside), []);
    assert.equal(existsSync(join(tmp, 'evil-ran')), false, 'the job did not run');
  });

  test('ping loss: the agent stops claiming, reports not ready, reconnects by itself', async () => {
    const proxy = await new TcpProxy(Number(new URL(t.url).port)).listen();
    try {
      const token = await poolWithToken(t, { name: 'flaky' });
      const agent = startAgent({ server: proxy.url, token, health: true });
      const port = await agent.healthPort();
      const probe = async (path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).status;
      assert.equal(await probe('/livez'), 200);
      await waitFor('ready', async () => (await probe('/readyz')) === 200);

      proxy.pause();
      const lostAt = Date.now();
      await waitFor('not ready after ping loss', async () => (await probe('/readyz')) === 503, 5000);
      const noticed = Date.now() - lostAt;
      assert.equal(await probe('/livez'), 200);
      const disconnect = await agent.waitForLog('control channel disconnected; not claiming until it is back');
      assert.match(disconnect.reason, /no event for 900ms/);
      const job = await submit(t, { pool: 'flaky', command: 'echo after-reconnect' });
      assert.equal((await getJob(t, job.id)).state, 'queued');

      proxy.resume();
      const backAt = Date.now();
      await waitFor('ready again', async () => (await probe('/readyz')) === 200, 10_000);
      const recovered = Date.now() - backAt;
      assert.equal((await waitForJob(t, job.id)).state, 'succeeded');
      assert.ok(agent.count('control channel connected') >= 2);
      console.log(`ping loss noticed after ${noticed}ms (3 x 300ms pings); ready again ${recovered}ms after the network came back`);
    } finally {
      await proxy.close();
    }
  });

  test('a runner deleted while its agent was cut off is told "gone" (410) on reconnect and exits 0', async () => {
    const proxy = await new TcpProxy(Number(new URL(t.url).port)).listen();
    try {
      const token = await poolWithToken(t, { name: 'cutoff' });
      const agent = startAgent({ server: proxy.url, token });
      const id = await agent.runnerId();
      await agent.waitForLog('control channel connected');
      proxy.pause();
      await agent.waitForLog('control channel disconnected; not claiming until it is back');
      assert.equal((await t.api('DELETE', `/api/v1/runners/${id}`)).status, 200); // the delete event cannot reach it
      proxy.resume();
      assert.equal(await agent.exitCode(), 0);
      assert.ok(agent.logs.some((l) => l.msg === 'stopping' && l.kind === 'gone'), 'stopped as gone, not as unauthorized');
      assert.equal(existsSync(join(agent.stateDir, 'identity.json')), false, 'the dead identity is discarded');
    } finally {
      await proxy.close();
    }
  });

  test('a server restart mid-job loses no result', async () => {
    const db = await createPgDatabase();
    let s1: TestServer | undefined = await startTestServer({ dbUrl: db.url, loops: false, config: SERVER_CONFIG });
    let s2: TestServer | undefined;
    try {
      const port = Number(new URL(s1.url).port);
      const token = await poolWithToken(s1, { name: 'restart' });
      const agent = startAgent({ server: s1.url, token });
      await agent.waitForLog('ready for jobs');
      const running = join(tmp, 'restart-running');
      const go = join(tmp, 'restart-go');
      const job = await submit(s1, {
        pool: 'restart',
        command: `echo before; touch ${running}; while [ ! -f ${go} ]; do sleep 0.05; done; echo after; echo '{"survived":true}' > "$RUNYARD_OUTPUT"`,
      });
      await waitFor('job running', () => existsSync(running));
      await waitFor('first log line stored', async () => (await allLogs(s1!, job.id)).some((l) => l.m === 'before'));
      await s1.close();
      s1 = undefined;
      writeFileSync(go, ''); // the job finishes while the server is down
      await agent.waitForLog('job process exited');
      // Its last log lines and then its result wait for the server: retried, not dropped.
      await waitFor('a delivery retry', () => agent.logs.some((l) => l.msg === 'log batch not delivered; retrying' || l.msg === 'result not delivered; retrying'));

      s2 = await startTestServer({ dbUrl: db.url, loops: false, config: { ...SERVER_CONFIG, port } });
      const done = await waitForJob(s2, job.id, undefined, 20_000);
      assert.equal(done.state, 'succeeded');
      assert.deepEqual(done.output, { survived: true });
      const out = (await allLogs(s2, job.id)).filter((l) => l.s === 'o').map((l) => l.m);
      assert.deepEqual(out, ['before', 'after']);
      await agent.waitForLog('control channel connected', () => agent.count('control channel connected') >= 2, 10_000);
      // And the runner takes new work on the new server.
      const next = await submit(s2, { pool: 'restart', command: 'true' });
      assert.equal((await waitForJob(s2, next.id)).state, 'succeeded');
    } finally {
      await killAllAgents();
      await s1?.close();
      await s2?.close();
      await db.drop();
    }
  });

  test('disable, enable and drain: running jobs finish, the agent deregisters and exits 0', async () => {
    const token = await poolWithToken(t, { name: 'ops', maxJobsPerRunner: 2 });
    const agent = startAgent({ server: t.url, token });
    const id = await agent.runnerId();
    await agent.waitForLog('ready for jobs');
    const gate = join(tmp, 'ops-gate');
    const hold = `touch ${tmp}/ops-started-$RUNYARD_JOB_ID; while [ ! -f ${gate} ]; do sleep 0.05; done`;

    const a = await submit(t, { pool: 'ops', command: hold });
    await waitFor('job a running', () => existsSync(join(tmp, `ops-started-${a.id}`)));
    assert.equal((await t.api('POST', `/api/v1/runners/${id}/disable`)).status, 200);
    await agent.waitForLog('runner disabled; not claiming (running jobs continue)');
    const b = await submit(t, { pool: 'ops', command: 'echo b' });
    const beat = async () => (await t.api('GET', `/api/v1/runners/${id}`)).body.runner.lastHeartbeatAt;
    const b0 = await beat();
    await waitFor('a heartbeat', async () => (await beat()) !== b0);
    const b1 = await beat();
    await waitFor('another heartbeat', async () => (await beat()) !== b1);
    assert.equal((await getJob(t, b.id)).state, 'queued', 'a disabled runner claims nothing');
    writeFileSync(gate, '');
    assert.equal((await waitForJob(t, a.id)).state, 'succeeded', 'a running job finishes on a disabled runner');
    assert.equal((await getJob(t, b.id)).state, 'queued');

    assert.equal((await t.api('POST', `/api/v1/runners/${id}/enable`)).status, 200);
    assert.equal((await waitForJob(t, b.id)).state, 'succeeded');

    const gate2 = join(tmp, 'ops-gate-2');
    const c = await submit(t, { pool: 'ops', command: `touch ${tmp}/ops-c; while [ ! -f ${gate2} ]; do sleep 0.05; done; echo drained-fine` });
    await waitFor('job c running', () => existsSync(join(tmp, 'ops-c')));
    assert.equal((await t.api('POST', `/api/v1/runners/${id}/drain`)).status, 200);
    await agent.waitForLog('draining: finishing running jobs, claiming nothing more');
    const d = await submit(t, { pool: 'ops', command: 'true' });
    assert.equal(agent.child.exitCode, null, 'still running while its job runs');
    writeFileSync(gate2, '');
    assert.equal((await waitForJob(t, c.id)).state, 'succeeded');
    assert.equal(await agent.exitCode(), 0);
    assert.equal((await t.api('GET', `/api/v1/runners/${id}`)).body.runner.state, 'terminated');
    assert.equal((await getJob(t, d.id)).state, 'queued', 'a draining runner claims nothing');
    assert.equal(existsSync(join(agent.stateDir, 'identity.json')), false, 'a deregistered identity is not reused');
  });

  test('delete: running jobs are killed without a report, state and work dirs are removed, exit 0', async () => {
    const token = await poolWithToken(t, { name: 'doomed' });
    const agent = startAgent({ server: t.url, token });
    const id = await agent.runnerId();
    await agent.waitForLog('ready for jobs');
    assert.ok(existsSync(join(agent.stateDir, 'identity.json')));
    const pids = join(tmp, 'doomed-pids');
    const job = await submit(t, { pool: 'doomed', command: `sleep 1000 & echo $! >> ${pids}; echo $$ >> ${pids}; wait` });
    await waitFor('job tree started', () => existsSync(pids) && readFileSync(pids, 'utf8').trim().split('\n').length === 2);
    const jobPids = readFileSync(pids, 'utf8').trim().split('\n').map(Number);

    assert.equal((await t.api('DELETE', `/api/v1/runners/${id}`)).status, 200);
    assert.equal(await agent.exitCode(), 0);
    assert.ok(jobPids.every((p) => !isAlive(p)), 'job processes killed');
    assert.equal(existsSync(agent.stateDir), false, 'state dir removed');
    assert.equal(existsSync(agent.workDir), false, 'work dir removed');
    const after = await getJob(t, job.id);
    assert.equal(after.state, 'queued', 'the server requeued it; the agent reported nothing');
    assert.equal(after.exitCode, null);
    assert.ok(agent.logs.every((l) => l.msg !== 'job result reported'));
  });

  test('two agents never run the same job; an ephemeral runner takes one job and exits', async () => {
    const token = await poolWithToken(t, { name: 'shared', maxJobsPerRunner: 2 });
    const a1 = startAgent({ server: t.url, token });
    const a2 = startAgent({ server: t.url, token });
    await Promise.all([a1.waitForLog('ready for jobs'), a2.waitForLog('ready for jobs')]);
    const ledger = join(tmp, 'shared-ledger');
    const jobs = [];
    for (let i = 0; i < 30; i++) jobs.push(await submit(t, { pool: 'shared', command: `echo $RUNYARD_JOB_ID >> ${ledger}; sleep 0.05` }));
    const done = await Promise.all(jobs.map((j) => waitForJob(t, j.id, undefined, 30_000)));
    assert.ok(done.every((j) => j.state === 'succeeded' && j.attempt === 1));
    const ran = readFileSync(ledger, 'utf8').trim().split('\n').map(Number).sort((x, y) => x - y);
    assert.deepEqual(ran, jobs.map((j) => j.id).sort((x, y) => x - y), 'each job ran exactly once');
    const runners = new Set(done.map((j) => j.runnerId));
    assert.equal(runners.size, 2, 'both agents took jobs');

    const eToken = await poolWithToken(t, { name: 'once', ephemeral: true, maxJobsPerRunner: 2 });
    const e = startAgent({ server: t.url, token: eToken });
    const eid = await e.runnerId();
    const first = await submit(t, { pool: 'once', command: 'echo only-me' });
    const second = await submit(t, { pool: 'once', command: 'echo not-me' });
    assert.equal(await e.exitCode(), 0);
    const states = [(await getJob(t, first.id)).state, (await getJob(t, second.id)).state].sort();
    assert.deepEqual(states, ['queued', 'succeeded']);
    assert.equal((await t.api('GET', `/api/v1/runners/${eid}`)).body.runner.state, 'terminated');
  });

  test('SIGTERM drains; jobs still running after the grace period, or at a second SIGTERM, are killed and reported', async () => {
    const token = await poolWithToken(t, { name: 'sigterm', maxJobsPerRunner: 2 });
    const agent = startAgent({ server: t.url, token, gracePeriod: '1500ms' });
    const id = await agent.runnerId();
    await agent.waitForLog('ready for jobs');
    const gate = join(tmp, 'sigterm-gate');
    const quick = await submit(t, { pool: 'sigterm', command: `touch ${tmp}/sig-quick; while [ ! -f ${gate} ]; do sleep 0.05; done` });
    const endless = await submit(t, { pool: 'sigterm', command: `touch ${tmp}/sig-endless; sleep 1000` });
    await waitFor('both running', () => existsSync(join(tmp, 'sig-quick')) && existsSync(join(tmp, 'sig-endless')));
    agent.signal('SIGTERM');
    await agent.waitForLog('draining: finishing running jobs, claiming nothing more');
    writeFileSync(gate, '');
    assert.equal((await waitForJob(t, quick.id)).state, 'succeeded', 'a job that ends within the grace period finishes normally');
    const killed = await waitForJob(t, endless.id);
    assert.equal(killed.state, 'failed');
    assert.match(killed.error, /agent shutting down/);
    assert.equal(await agent.exitCode(), 0);
    // a hand-started agent keeps its identity: offline, not terminated (issue 19)
    assert.equal((await t.api('GET', `/api/v1/runners/${id}`)).body.runner.state, 'offline');

    // A second SIGTERM does not wait for the (long) grace period.
    const patient = startAgent({ server: t.url, token, gracePeriod: '60s' });
    await patient.waitForLog('ready for jobs');
    const long = await submit(t, { pool: 'sigterm', command: `touch ${tmp}/sig-long; sleep 1000` });
    await waitFor('long job running', () => existsSync(join(tmp, 'sig-long')));
    patient.signal('SIGTERM');
    await patient.waitForLog('draining: finishing running jobs, claiming nothing more');
    patient.signal('SIGTERM');
    const longDone = await waitForJob(t, long.id, undefined, 10_000);
    assert.equal(longDone.state, 'failed');
    assert.match(longDone.error, /agent shutting down/);
    assert.equal(await patient.exitCode(10_000), 0);
  });

  test('a restarted agent keeps its identity, kills what its predecessor left running; the lost job is retried', async () => {
    const token = await poolWithToken(t, { name: 'phoenix' });
    const stateDir = join(tmp, 'phoenix-state');
    const workDir = join(tmp, 'phoenix-work');
    const first = startAgent({ server: t.url, token, stateDir, workDir });
    const id = await first.runnerId();
    await first.waitForLog('ready for jobs');
    const marker = join(tmp, 'phoenix-attempts');
    const pidFile = join(tmp, 'phoenix-pid');
    const job = await submit(t, { pool: 'phoenix', command: `echo $RUNYARD_ATTEMPT >> ${marker}; [ "$RUNYARD_ATTEMPT" -gt 1 ] || { sleep 1000 & echo $! > ${pidFile}; wait; }` });
    await waitFor('attempt 1 running', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim());
    // the job runs the moment it is spawned; the agent has recorded its group once it logs the start
    await first.waitForLog('job started');
    const orphan = Number(readFileSync(pidFile, 'utf8'));
    first.signal('SIGKILL');
    await first.exited;
    assert.ok(isAlive(orphan), 'an agent killed outright leaves its job running');

    const second = startAgent({ server: t.url, token, stateDir, workDir });
    assert.equal(await second.runnerId(), id, 'same runner id after a restart');
    await second.waitForLog('killed jobs left running by a previous agent on this work dir');
    await waitFor('orphaned job killed', () => !isAlive(orphan), 3000);
    const done = await waitForJob(t, job.id);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.attempt, 2);
    assert.deepEqual(readFileSync(marker, 'utf8').trim().split('\n'), ['1', '2']);

    // A second agent on the same dirs is refused while the first is alive.
    const twin = startAgent({ server: t.url, token, stateDir, workDir });
    assert.equal(await twin.exitCode(), 1);
    assert.match(twin.stderr, /state dir .* is in use by another agent/);
    assert.equal((await t.api('GET', `/api/v1/runners/${id}`)).body.runner.state !== 'terminated', true);
  });

  test('refusals: a failing setup, a revoked token, an unknown token', async () => {
    const setupToken = await poolWithToken(t, { name: 'bad-setup', setup: ['echo preparing', 'echo something broke >&2; exit 5'] });
    const broken = startAgent({ server: t.url, token: setupToken });
    const id = await broken.runnerId();
    assert.equal(await broken.exitCode(), 1);
    assert.match(broken.stderr, /runyard agent: setup failed \(exit code 5\)/);
    assert.match(broken.stderr, /something broke/);
    assert.equal((await t.api('GET', `/api/v1/runners/${id}`)).body.runner.state, 'terminated', 'it deregistered');

    const tok = await t.api('POST', '/api/v1/tokens', { pool: 'bad-setup' });
    assert.equal((await t.api('DELETE', `/api/v1/tokens/${tok.body.token.id}`)).status, 200);
    const revoked = startAgent({ server: t.url, token: tok.body.secret });
    assert.equal(await revoked.exitCode(), 1);
    assert.match(revoked.stderr, /registration refused: registration token has been revoked/);

    const unknown = startAgent({ server: t.url, token: 'ryd_reg_not-a-real-token' });
    await unknown.waitForLog('registration failed; retrying', (l) => l.status === 401);
    unknown.signal('SIGTERM');
    assert.equal(await unknown.exitCode(), 0);
    assert.ok(!unknown.stderr.includes('ryd_reg_not-a-real-token'));
  });

  test('the programmatic Agent: start(), typed events, close()', async () => {
    const token = await poolWithToken(t, { name: 'embedded' });
    const agent = new Agent({ server: t.url, registrationToken: token, stateDir: join(tmp, 'embedded-state'), workDir: join(tmp, 'embedded-work'), log: silentLogger, gracePeriodMs: 1000 });
    const registered = once(agent, 'registered');
    await agent.start();
    const [info] = await registered;
    assert.equal(info.config.pool, 'embedded');
    const started = once(agent, 'job-started');
    const finished = once(agent, 'job-finished');
    const job = await submit(t, { pool: 'embedded', command: 'echo \'{"ok":true}\' > "$RUNYARD_OUTPUT"' });
    assert.equal((await started)[0].jobId, job.id);
    const [summary] = await finished;
    assert.deepEqual({ id: summary.jobId, outcome: summary.outcome, exitCode: summary.exitCode, reported: summary.reported }, { id: job.id, outcome: 'succeeded', exitCode: 0, reported: true });
    assert.deepEqual(await agent.close(), { code: 0, reason: 'agent shutting down' });
    assert.equal((await t.api('GET', `/api/v1/runners/${info.runnerId}`)).body.runner.state, 'terminated');
  });
});
