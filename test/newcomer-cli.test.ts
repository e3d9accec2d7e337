/*
 * Issue 19, the mistakes a new user makes on the command line: each must either do what was
 * meant or stop with exit code 2 naming the problem. The real `runyard` binary against a real
 * server in this process; a FakeRunner drives jobs where a job has to run.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createToken } from '../src/store/queries/tokens.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { cliFor, cleanupClis, FakeRunner, runCli, spawnCli, type CliResult } from './helpers/cli.js';

const CONFIG = {
  pools: [
    { name: 'local', provider: 'process', maxJobsPerRunner: 2, maxRunners: 0 },
    { name: 'fake', provider: 'process', maxJobsPerRunner: 4, maxRunners: 0 },
    { name: 'from-config', provider: 'process', maxRunners: 0 },
  ],
};

let t: TestServer;
let cli: ReturnType<typeof cliFor>;

function ok(r: CliResult): CliResult {
  assert.equal(r.code, 0, `expected exit 0, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

function fails(r: CliResult, code: number, stderr: RegExp): CliResult {
  assert.equal(r.code, code, `expected exit ${code}, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.match(r.stderr, stderr);
  return r;
}

const job = async (id: number) => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;
const jobCount = async () => (await t.api('GET', '/api/v1/jobs?limit=1000')).body.jobs.length;

async function submitted(args: string[]): Promise<any> {
  const r = ok(await cli(['jobs', 'submit', ...args]));
  assert.match(r.stdout, /^\d+\n$/, r.stdout);
  return job(Number(r.stdout));
}

describe('newcomer: the CLI says what it does', () => {
  before(async () => {
    t = await startTestServer({ loops: false, config: CONFIG });
    cli = cliFor(t);
  });
  after(async () => {
    cleanupClis();
    await t?.close();
  });

  test('1. after the first word of the command, every argument belongs to the command', async () => {
    // -l is --label and --version runyard's own flag, but here they are the command's
    const ls = await submitted(['ls', '-la']);
    assert.deepEqual(ls.commands, ['ls -la']);
    assert.deepEqual(ls.labels, []);
    const echo = await submitted(['echo', '--version']);
    assert.deepEqual(echo.commands, ['echo --version']);
    // options before the command still apply; options after its first word are its own
    const pooled = await submitted(['--pool', 'local', '-e', 'A=1', 'grep', '-e', 'x', '--pool', 'y', 'file']);
    assert.equal(pooled.pool, 'local');
    assert.deepEqual(pooled.env, { A: '1' });
    assert.deepEqual(pooled.commands, ['grep -e x --pool y file']);
    // `--` works as before, and global options still work after a command
    assert.deepEqual((await submitted(['--', 'ls', '-la'])).commands, ['ls -la']);
    const port = new URL(t.url).port;
    const listed = ok(await cli(['jobs', 'list', '--json', '--server', `http://127.0.0.1:${port}`], { server: null }));
    assert.ok(JSON.parse(listed.stdout).jobs.length >= 4);
    // runyard's own --version still answers before any command
    assert.match(ok(await cli(['--version'])).stdout, /^\d+\.\d+\.\d+\n$/);
  });

  test('1. jobs submit --wait ls -la follows the job running `ls -la`', async () => {
    const runner = await FakeRunner.register(t, 'fake', 'wait-runner');
    const proc = spawnCli(['jobs', 'submit', '--pool', 'fake', '--wait', 'ls', '-la'], { server: t.url, token: t.token });
    const j = await runner.claimOne();
    assert.deepEqual(j.commands, ['ls -la']);
    await runner.start(j);
    await runner.log(j, 1, [['o', 'total 0']]);
    await runner.result(j, 0);
    const r = await proc.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'total 0\n');
  });

  test('2. a duration flag without a unit is refused naming the flag and the forms; nothing is submitted', async () => {
    const before = await jobCount();
    fails(await cli(['jobs', 'submit', '--timeout', '5', 'minutes', '--', 'echo', 'x']), 2, /error: --timeout needs a unit: 5 alone is ambiguous; write e\.g\. 5s or 5m \(forms: 30s, 10m, 1h, 1h30m or 250ms\)/);
    fails(await cli(['tokens', 'create', '--pool', 'fake', '--expires-in', '24']), 2, /--expires-in needs a unit/);
    assert.equal(await jobCount(), before);
    const tokens = (await t.api('GET', '/api/v1/tokens')).body.tokens;
    assert.ok(!tokens.some((x: any) => x.kind === 'registration' && x.expiresAt), 'no token was created');
    // with a unit it works, and --help says so
    assert.equal((await submitted(['--timeout', '5m', '--', 'echo', 'x'])).timeoutMs, 300_000);
    assert.match(ok(await cli(['jobs', 'submit', '--help'])).stdout, /a bare number is\s+refused/);
    // the API keeps its forms: a number there is milliseconds
    const api = await t.api('POST', '/api/v1/jobs', { command: 'true', timeout: 5000 });
    assert.equal(api.status, 201);
    assert.equal(api.body.job.timeoutMs, 5000);
  });

  test('6. events --kind github is taken, as by the API; submit --help describes the quoting the README describes', async () => {
    assert.match(ok(await cli(['events', '--kind', 'github'])).stdout, /^no events match\n$/);
    fails(await cli(['events', '--kind', 'weather']), 2, /--kind must be one of job, runner, pool, token, auth, scheduler, github/);
    const help = ok(await cli(['jobs', 'submit', '--help'])).stdout.replace(/\s+/g, ' ');
    assert.match(help, /several are joined with spaces, quoting those that contain spaces/);
  });

  test('10. tokens list hides the launch tokens of runners the server started, unless --all', async () => {
    const mine = (await t.api('POST', '/api/v1/tokens', { pool: 'fake', description: 'my build box' })).body.token;
    // what the scheduler makes when it starts a runner: a registration token bound to that runner
    const launch = (await createToken(t.server.db, Date.now(), { kind: 'registration', pool: 'fake', runnerId: '11111111-2222-4333-8444-555555555555', description: 'launch token', expiresAt: Date.now() + 60_000 })).token;
    const list = ok(await cli(['tokens', 'list']));
    assert.match(list.stdout, new RegExp(`^${mine.id}\\s+registration`, 'm'));
    assert.doesNotMatch(list.stdout, new RegExp(launch.id));
    assert.match(list.stderr, /1 launch token of runners the server started not shown; --all lists them/);
    assert.doesNotMatch(JSON.stringify(JSON.parse(ok(await cli(['tokens', 'list', '--json'])).stdout)), new RegExp(launch.id));
    assert.match(ok(await cli(['tokens', 'list', '--all'])).stdout, new RegExp(`^${launch.id}\\s+registration\\s+fake\\s+active.*launch token$`, 'm'));
  });

  test('10. pools delete removes an unused pool; a pool with unfinished jobs is refused naming them; help explains each way to stop a runner', async () => {
    ok(await cli(['pools', 'apply', '-f', '-'], { stdin: 'name: spare\nmaxRunners: 0\n' }));
    assert.equal(ok(await cli(['pools', 'delete', 'spare'])).stdout, 'pool spare deleted\n');
    assert.equal((await t.api('GET', '/api/v1/pools/spare')).status, 404);
    assert.equal((await t.api('GET', '/api/v1/events?kind=pool&subject=spare')).body.events[0].reason, 'deleted');
    ok(await cli(['pools', 'apply', '-f', '-'], { stdin: 'name: busy\nmaxRunners: 0\n' }));
    ok(await cli(['jobs', 'submit', '--pool', 'busy', '--', 'true']));
    fails(await cli(['pools', 'delete', 'busy']), 2, /error: pool busy still has 1 unfinished job; cancel or wait for its jobs \(runyard jobs list --pool busy\) and drain its runners .*\(field: name\)/);
    assert.equal((await t.api('GET', '/api/v1/pools/busy')).status, 200);
    fails(await cli(['pools', 'delete', 'ghost']), 1, /pool ghost not found\nhint: list pools/);
    // a pool of runyard.yaml: deleted, with a note that it comes back
    const local = ok(await cli(['pools', 'delete', 'from-config']));
    assert.match(local.stderr, /pool from-config is in the server's runyard\.yaml; remove it there too, or it comes back at the next start/);

    const help = ok(await cli(['runners', '--help'])).stdout;
    for (const line of [/disable\s+takes no new jobs; stays alive/, /drain\s+takes no new jobs, finishes the running ones, then deregisters/, /terminate\s+drain, and also ends at once a runner that never registered or is offline/, /delete\s+at once: running jobs are killed and go back to the queue/]) assert.match(help, line);
  });

  test('10. process metrics carry one prefix', async () => {
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(metrics, /^runyard_process_cpu_user_seconds_total /m);
    assert.doesNotMatch(metrics, /runyard_process_process_/);
  });

  test('10. the CLI in a subdirectory of where `up` runs finds the server and the admin token; a missing token names the admin token', async () => {
    const root = mkdtempSync(join(tmpdir(), 'runyard-subdir-'));
    try {
      mkdirSync(join(root, '.runyard'));
      writeFileSync(join(root, '.runyard', 'server.json'), JSON.stringify({ url: t.url, pid: process.pid }) + '\n');
      writeFileSync(join(root, '.runyard', 'admin-token'), t.token + '\n');
      const deep = join(root, 'src', 'lib');
      mkdirSync(deep, { recursive: true });
      const r = ok(await runCli(['pools', 'list', '--json'], { cwd: deep, server: null, token: null }));
      assert.ok(JSON.parse(r.stdout).pools.some((p: any) => p.name === 'fake'));
      // without a token: the hint names the admin token and where it is, not `tokens create`
      const none = await runCli(['pools', 'list'], { server: t.url, token: null });
      fails(none, 1, /missing bearer token: .*the admin token printed by `runyard up`.*\nhint: .*admin token printed by `runyard up` \(saved in \.runyard\/admin-token/);
      assert.doesNotMatch(none.stderr, /tokens create/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
