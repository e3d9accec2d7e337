/*
 * Issue 19, the mistakes a new user makes on the command line: each must either do what was
 * meant or stop with exit code 2 naming the problem. The real `runyard` binary against a real
 * server in this process; a FakeRunner drives jobs where a job has to run.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './helpers/server.js';
import { cliFor, cleanupClis, FakeRunner, spawnCli, type CliResult } from './helpers/cli.js';

const CONFIG = {
  pools: [
    { name: 'local', provider: 'process', maxJobsPerRunner: 2, maxRunners: 0 },
    { name: 'fake', provider: 'process', maxJobsPerRunner: 4, maxRunners: 0 },
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
});
