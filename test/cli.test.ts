/*
 * The client CLI end to end: a real server in this process, the real `runyard` binary as a child
 * process, and a fake runner speaking the runner protocol over HTTP to drive jobs to an end.
 * Build first (`npx tsc -p . && node scripts/copy-assets.mjs`): the CLI runs from dist/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { cliFor, closedPort, FakeRunner, cleanupClis, runCli, spawnCli, startDroppingProxy, type CliResult } from './helpers/cli.js';

// No pool may start real runners here: `local` and `fake` have maxRunners 0, and jobs in `fake`
// are run by the FakeRunner below.
const CONFIG = {
  pools: [
    { name: 'local', provider: 'process', maxJobsPerRunner: 2, maxRunners: 0 },
    { name: 'fake', provider: 'process', maxJobsPerRunner: 4, maxRunners: 0 },
  ],
  limits: { maxArtifactBytes: 4 * 1024 * 1024 },
};

let t: TestServer;
let cli: ReturnType<typeof cliFor>;
let runner: FakeRunner;
const dir = mkdtempSync(join(tmpdir(), 'runyard-cli-files-'));

function ok(r: CliResult): CliResult {
  assert.equal(r.code, 0, `expected exit 0, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

function fails(r: CliResult, code: number, stderr: RegExp): CliResult {
  assert.equal(r.code, code, `expected exit ${code}, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.match(r.stderr, stderr);
  return r;
}

async function submit(args: string[]): Promise<number> {
  const r = ok(await cli(['jobs', 'submit', ...args]));
  assert.match(r.stdout, /^\d+\n$/);
  return Number(r.stdout);
}

const job = async (id: number) => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;

describe('runyard CLI', () => {
  before(async () => {
    t = await startTestServer({ loops: false, config: CONFIG });
    cli = cliFor(t);
    runner = await FakeRunner.register(t, 'fake', 'fake-main');
  });
  after(async () => {
    cleanupClis();
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('jobs submit sends the command, env, secrets and limits; list and show display it', async () => {
    const id = await submit(['--env', 'A=1', '--env', 'B=x=y', '--secret', 'TOKEN=shh-secret', '--label', 'gpu', '--timeout', '10m', '--max-attempts', '2', '--', 'echo', 'hello', 'world']);
    const j = await job(id);
    assert.deepEqual(j.commands, ['echo hello world']);
    assert.deepEqual(j.env, { A: '1', B: 'x=y' });
    assert.deepEqual(j.secretNames, ['TOKEN']);
    assert.deepEqual(j.labels, ['gpu']);
    assert.equal(j.timeoutMs, 600_000);
    assert.equal(j.maxAttempts, 2);
    assert.equal(j.pool, 'local');

    // one argument is the shell command as written; a multi-word argument stays one word
    assert.deepEqual((await job(await submit(['--', 'make build && make test']))).commands, ['make build && make test']);
    assert.deepEqual((await job(await submit(['--', 'sh', '-c', 'echo a; echo b']))).commands, ["sh -c 'echo a; echo b'"]);
    // several --cmd: commands run in order
    const multi = await submit(['-c', 'make', '-c', 'make test']);
    assert.deepEqual((await job(multi)).commands, ['make', 'make test']);

    const list = ok(await cli(['jobs', 'list']));
    const [header, ...rows] = list.stdout.trimEnd().split('\n');
    assert.match(header!, /^ID\s+STATE\s+POOL\s+ATTEMPT\s+EXIT\s+AGE\s+DURATION\s+COMMAND$/);
    assert.equal(rows.length, 4);
    assert.match(rows[0]!, new RegExp(`^${multi}\\s+queued\\s+local\\s+0/3\\s+-\\s+(now|\\d+s)\\s+-\\s+make && make test$`));
    assert.match(rows[3]!, new RegExp(`^${id}\\s+queued\\s+local\\s+0/2\\s+.*echo hello world$`));
    // columns are aligned: STATE starts at the same offset in every line
    const col = header!.indexOf('STATE');
    for (const r of rows) assert.equal(r.slice(col, col + 6), 'queued');

    const json = JSON.parse(ok(await cli(['jobs', 'list', '--json'])).stdout);
    assert.deepEqual(json.jobs.map((x: any) => x.id).slice(-1), [id]);
    assert.equal(json.jobs.length, 4);

    const page = ok(await cli(['jobs', 'list', '--state', 'queued,running', '--pool', 'local', '--limit', '1', '--json']));
    assert.equal(JSON.parse(page.stdout).jobs.length, 1);
    const human = ok(await cli(['jobs', 'list', '--limit', '1']));
    assert.match(human.stderr, new RegExp(`more: runyard jobs list --before ${multi}`));
    assert.match(ok(await cli(['jobs', 'list', '--state', 'succeeded'])).stdout, /^no jobs match\n$/);

    const show = ok(await cli(['jobs', 'show', String(id)]));
    assert.match(show.stdout, /^id:\s+\d+$/m);
    assert.match(show.stdout, /^state:\s+queued$/m);
    assert.match(show.stdout, /^commands:\s+echo hello world$/m);
    assert.match(show.stdout, /^attempt:\s+0 of 2$/m);
    assert.match(show.stdout, /^timeout:\s+10m$/m);
    assert.match(show.stdout, /^secrets:\s+TOKEN$/m);
    assert.match(show.stdout, /events:\nTIME\s+CHANGE\s+REASON\s+BY\n\S+\s+queued\s+submitted\s+admin:/);
    assert.doesNotMatch(show.stdout, /shh-secret/);

    const shown = JSON.parse(ok(await cli(['jobs', 'show', String(id), '--json'])).stdout);
    assert.equal(shown.job.id, id);
    assert.equal(shown.events[0].toState, 'queued');
    assert.doesNotMatch(JSON.stringify(shown), /shh-secret/);
  });

  test('jobs cancel and retry change the job and say so; a second cancel is refused', async () => {
    const id = await submit(['--', 'sleep', '100']);
    assert.equal(ok(await cli(['jobs', 'cancel', String(id)])).stdout, `job ${id} cancelled\n`);
    assert.equal((await job(id)).state, 'cancelled');
    fails(await cli(['jobs', 'cancel', String(id)]), 2, new RegExp(`error: job ${id} is already cancelled`));
    assert.match(ok(await cli(['jobs', 'retry', String(id)])).stdout, new RegExp(`^job ${id} queued again in pool local`));
    assert.equal((await job(id)).state, 'queued');
    fails(await cli(['jobs', 'retry', String(id)]), 2, /only failed, cancelled or timed-out jobs can be retried/);
    const show = ok(await cli(['jobs', 'show', String(id)]));
    assert.match(show.stdout, /queued → cancelled\s+cancelled by operator/);
    assert.match(show.stdout, /cancelled → queued\s+retried by operator/);
    const cancelled = JSON.parse(ok(await cli(['jobs', 'cancel', String(id), '--json'])).stdout);
    assert.equal(cancelled.job.state, 'cancelled');
  });

  test('jobs submit --json, --payload, --idempotency-key', async () => {
    const payload = join(dir, 'payload.json');
    writeFileSync(payload, JSON.stringify({ branch: 'main', n: 3 }));
    const first = JSON.parse(ok(await cli(['jobs', 'submit', '--json', '--payload', payload, '--idempotency-key', 'build-42', '--', 'true'])).stdout);
    assert.equal(first.created, true);
    assert.deepEqual(first.job.payload, { branch: 'main', n: 3 });
    const again = ok(await cli(['jobs', 'submit', '--idempotency-key', 'build-42', '--', 'true']));
    assert.equal(again.stdout, `${first.job.id}\n`);
    assert.match(again.stderr, /already exists with idempotency key "build-42"/);
    // the payload from stdin
    const piped = JSON.parse(ok(await cli(['jobs', 'submit', '--json', '--payload', '-', '--', 'true'], { stdin: '[1,2]' })).stdout);
    assert.deepEqual(piped.job.payload, [1, 2]);
  });

  test('bad input exits 2, names what is wrong and submits nothing', async () => {
    const before = (await t.api('GET', '/api/v1/jobs?limit=1000')).body.jobs.length;
    const badJson = join(dir, 'bad.json');
    writeFileSync(badJson, '{nope');
    const cases: [string[], RegExp][] = [
      [['jobs', 'submit', '--env', 'NOEQUALS', '--', 'true'], /--env must be NAME=VALUE, got "NOEQUALS"/],
      [['jobs', 'submit', '--env', '1X=2', '--', 'true'], /--env name "1X" is not a valid environment variable name/],
      [['jobs', 'submit', '--secret', 'UNSET_SECRET_FOR_TEST', '--', 'true'], /--secret UNSET_SECRET_FOR_TEST: give NAME=VALUE/],
      [['jobs', 'submit'], /no command given; put it after --/],
      [['jobs', 'submit', '-c', 'a', '--', 'b'], /either after -- or with --cmd, not both/],
      [['jobs', 'submit', '--timeout', 'soon', '--', 'true'], /--timeout must be a duration like 30s/],
      [['jobs', 'submit', '--max-attempts', '0', '--', 'true'], /--max-attempts must be an integer from 1 to 100, got "0"/],
      [['jobs', 'submit', '--pool', 'Not_A_Slug', '--', 'true'], /--pool must be a pool name/],
      [['jobs', 'submit', '--payload', join(dir, 'missing.json'), '--', 'true'], /--payload: cannot read .*missing\.json: no such file/],
      [['jobs', 'submit', '--payload', badJson, '--', 'true'], /--payload: .*bad\.json is not valid JSON/],
      [['jobs', 'submit', '--pool', 'nope', '--', 'true'], /unknown pool "nope".*\(field: pool\)/],
      [['jobs', 'submit', '--bogus', '--', 'true'], /unknown option '--bogus'/],
      [['jobs', 'show', 'abc'], /job ID must be a positive integer, got "abc"/],
      [['jobs', 'cancel', '-1'], /unknown option '-1'|job ID must be a positive integer/],
      [['jobs', 'logs', '1.5'], /job ID must be a positive integer, got "1.5"/],
      [['jobs', 'list', '--limit', 'ten'], /--limit must be an integer from 1 to 1000, got "ten"/],
      [['jobs', 'list', '--state', 'done'], /--state must be one or more of queued, claimed/],
      [['runners', 'list', '--state', 'sleeping'], /--state must be one or more of starting, idle/],
      [['events', '--kind', 'weather'], /--kind must be one of job, runner, pool, token, auth, scheduler, github, got "weather"/],
      [['jobs', 'show'], /missing required argument 'id'/],
    ];
    // independent of each other: run them side by side
    const results = await Promise.all(cases.map(([args]) => cli(args)));
    results.forEach((r, i) => fails(r, 2, cases[i]![1]));
    assert.equal((await t.api('GET', '/api/v1/jobs?limit=1000')).body.jobs.length, before);
  });

  test('an unreachable server, a wrong token or an unknown job exit 1 with a hint', async () => {
    const port = await closedPort();
    const [down, wrong, none, noJob, noPool] = await Promise.all([
      runCli(['jobs', 'list'], { server: `http://127.0.0.1:${port}`, token: t.token }),
      cli(['jobs', 'list'], { token: 'ryd_adm_wrong-token-000000000000' }),
      cli(['pools', 'list'], { token: null }),
      cli(['jobs', 'show', '99999']),
      cli(['pools', 'show', 'ghost']),
    ]);
    fails(down, 1, new RegExp(`error: cannot reach the runyard server at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)\nhint: start it with \`runyard up\``));
    fails(wrong, 1, /error: invalid, revoked or expired token\nhint: pass --token or set RUNYARD_TOKEN/);
    fails(none, 1, /error: missing bearer token.*\nhint: pass --token/);
    fails(noJob, 1, /error: job 99999 not found\nhint: list jobs with `runyard jobs list`/);
    fails(noPool, 1, /error: pool ghost not found\nhint: list pools/);
  });

  test('pools apply -f creates and updates pools from YAML; list and show display them', async () => {
    const file = join(dir, 'pools.yaml');
    writeFileSync(file, '- name: batch\n  maxRunners: 0\n  idleTimeout: 2m\n  labels: [linux, big]\n- name: nightly\n  maxRunners: 0\n  ephemeral: true\n');
    assert.equal(ok(await cli(['pools', 'apply', '-f', file])).stdout, 'pool batch created\npool nightly created\n');

    // {pools: [...]} (as in runyard.yaml), changing what shapes a runner
    const wrapped = join(dir, 'runyard.yaml');
    writeFileSync(wrapped, 'port: 9999\npools:\n  - name: batch\n    maxRunners: 0\n    idleTimeout: 2m\n    env: { CI: "1" }\n');
    const applied = ok(await cli(['pools', 'apply', '-f', wrapped]));
    assert.equal(applied.stdout, 'pool batch updated; config changed: its runners finish their jobs and are replaced\n');
    assert.match(applied.stderr, /applying only the pools of .*runyard\.yaml; port is/);
    // one pool, a scaling knob only
    const single = join(dir, 'one.yaml');
    writeFileSync(single, 'name: batch\nmaxRunners: 0\nminIdle: 0\nidleTimeout: 3m\nenv: { CI: "1" }\n');
    assert.equal(ok(await cli(['pools', 'apply', '-f', single])).stdout, 'pool batch updated\n');

    const list = ok(await cli(['pools', 'list']));
    assert.match(list.stdout, /^NAME\s+PROVIDER\s+CLASS\s+RUNNERS\s+QUEUED/);
    assert.match(list.stdout, /^batch\s+process\s+-\s+0\s+0\s+0\s+0\s+1\s+api$/m);
    assert.match(list.stdout, /^fake\s+process\s+-\s+1 \(1 idle\)\s+0/m);
    const pools = JSON.parse(ok(await cli(['pools', 'list', '--json'])).stdout).pools;
    assert.deepEqual(pools.map((p: any) => p.name), ['batch', 'fake', 'local', 'nightly']);
    const shown = JSON.parse(ok(await cli(['pools', 'show', 'batch', '--json'])).stdout).pool;
    assert.equal(shown.config.idleTimeout, 180_000);
    assert.deepEqual(shown.config.env, { CI: '1' });
    assert.deepEqual(shown.config.labels, []);
    const human = ok(await cli(['pools', 'show', 'nightly']));
    assert.match(human.stdout, /^ephemeral:\s+yes$/m);
    assert.match(human.stdout, /^idle timeout:\s+5m$/m);

    // bad files: the field is named and nothing changes
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'name: batch\nmaxRunners: lots\n');
    fails(await cli(['pools', 'apply', '-f', bad]), 2, /bad\.yaml: pool batch: maxRunners: Invalid input: expected number, received string/);
    assert.equal(JSON.parse(ok(await cli(['pools', 'show', 'batch', '--json'])).stdout).pool.config.maxRunners, 0);
    writeFileSync(bad, 'name: batch\nclass: huge\n');
    fails(await cli(['pools', 'apply', '-f', bad]), 2, /unknown class size huge.*\(field: pools\[0\]\.class\)\nfix it in .*bad\.yaml and apply again; nothing was changed/);
    writeFileSync(bad, 'name: batch\n  maxRunners: [\n');
    fails(await cli(['pools', 'apply', '-f', bad]), 2, /bad\.yaml line \d+, column \d+: /);
    writeFileSync(bad, '- name: a1\n- name: a1\n');
    fails(await cli(['pools', 'apply', '-f', bad]), 2, /pool a1 appears twice \(pools\[1\]\.name\)/);
    fails(await cli(['pools', 'apply', '-f', join(dir, 'nothing.yaml')]), 2, /cannot read .*nothing\.yaml: no such file/);
    fails(await cli(['pools', 'apply']), 2, /required option '-f, --file <file.yaml>' not specified/);
  });

  test('class-sizes list', async () => {
    const r = ok(await cli(['class-sizes', 'list']));
    assert.match(r.stdout, /^NAME\s+CPU\s+MEMORY\nsmall\s+0\.5\s+1 GiB\nmedium\s+1\s+2 GiB\nlarge\s+2\s+4 GiB\n$/);
    assert.deepEqual(JSON.parse(ok(await cli(['class-sizes', 'list', '--json'])).stdout).classSizes[0], { name: 'small', cpu: 0.5, memoryMb: 1024 });
  });

  test('tokens create prints a working secret once; list and revoke', async () => {
    const created = ok(await cli(['tokens', 'create', '--pool', 'fake', '--description', 'build box', '--expires-in', '24h']));
    const secret = /^\s+(ryd_reg_\S+)$/m.exec(created.stdout)?.[1];
    assert.ok(secret, created.stdout);
    const id = /registration token (tok_[0-9a-f]+) for pool fake \(expires \S+\)/.exec(created.stdout)?.[1];
    assert.ok(id, created.stdout);
    assert.match(created.stderr, /not shown again/);
    // the secret registers a runner
    const r = await FakeRunner.registerWith(t, secret!, 'token-check');
    assert.ok(r.credential.startsWith('ryd_run_'));

    const asJson = JSON.parse(ok(await cli(['tokens', 'create', '--pool', 'fake', '--json'])).stdout);
    assert.match(asJson.secret, /^ryd_reg_/);
    assert.equal(asJson.token.expiresAt, null);

    const list = ok(await cli(['tokens', 'list', '--pool', 'fake']));
    assert.match(list.stdout, new RegExp(`^${id}\\s+registration\\s+fake\\s+active\\s+(now|\\S+ ago)\\s+in 23h\\s+build box$`, 'm'));
    assert.doesNotMatch(list.stdout, /ryd_reg_/);

    assert.equal(ok(await cli(['tokens', 'revoke', id!])).stdout, `token ${id} revoked\n`);
    const after = JSON.parse(ok(await cli(['tokens', 'list', '--json'])).stdout).tokens.find((x: any) => x.id === id);
    assert.ok(after.revokedAt);
    assert.match(ok(await cli(['tokens', 'list'])).stdout, new RegExp(`^${id}\\s+registration\\s+fake\\s+revoked`, 'm'));
    await assert.rejects(FakeRunner.registerWith(t, secret!), (e: any) => e.status === 403);

    fails(await cli(['tokens', 'create', '--pool', 'nope']), 2, /unknown pool nope \(field: pool\)/);
    fails(await cli(['tokens', 'create']), 2, /required option '-p, --pool <pool>' not specified/);
    fails(await cli(['tokens', 'create', '--pool', 'fake', '--expires-in', 'tomorrow']), 2, /--expires-in must be a duration/);
    fails(await cli(['tokens', 'revoke', secret!]), 2, /token ID must look like tok_/);
    fails(await cli(['tokens', 'revoke', 'tok_000000000000']), 1, /token tok_000000000000 not found\nhint: list tokens/);
  });

  test('artifacts push uploads the file and prints its sha256 digest; list shows it', async () => {
    const file = join(dir, 'dist.tar.gz');
    const content = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(file, content);
    const digest = 'sha256:' + createHash('sha256').update(content).digest('hex');
    const r = ok(await cli(['artifacts', 'push', file]));
    assert.equal(r.stdout, `${digest}\n`);
    assert.match(r.stderr, /pushed dist\.tar\.gz \(3\.0 MiB\); use it in a pool as `distribution: sha256:/);
    const dl = await fetch(`${t.url}/api/v1/artifacts/${encodeURIComponent(digest)}`, { headers: { authorization: `Bearer ${t.token}` } });
    assert.equal(dl.status, 200);
    assert.ok(Buffer.from(await dl.arrayBuffer()).equals(content));

    const named = JSON.parse(ok(await cli(['artifacts', 'push', file, '--name', 'app-1.2.zip', '--json'])).stdout);
    assert.deepEqual(named.artifact, { digest, name: 'app-1.2.zip', size: content.length });
    const list = ok(await cli(['artifacts', 'list']));
    assert.match(list.stdout, new RegExp(`^app-1\\.2\\.zip\\s+3\\.0 MiB\\s+(now|\\d+s)\\s+${digest}$`, 'm'));
    assert.equal(JSON.parse(ok(await cli(['artifacts', 'list', '--json'])).stdout).artifacts.length, 1);

    const big = join(dir, 'big.tgz');
    writeFileSync(big, Buffer.alloc(5 * 1024 * 1024, 1));
    fails(await cli(['artifacts', 'push', big]), 2, /error: artifact of 5242880 bytes exceeds the limit of 4194304 bytes/);
    const txt = join(dir, 'notes.txt');
    writeFileSync(txt, 'x');
    fails(await cli(['artifacts', 'push', txt]), 2, /artifact name "notes\.txt" must be a file name ending in \.zip, \.tar\.gz, \.tgz or \.tar \(rename the file or pass --name\)/);
    fails(await cli(['artifacts', 'push', join(dir, 'gone.tgz')]), 2, /cannot read .*gone\.tgz: no such file/);
    const empty = join(dir, 'empty.tar');
    writeFileSync(empty, '');
    fails(await cli(['artifacts', 'push', empty]), 2, /empty\.tar is empty/);
  });

  test('jobs submit --wait streams the logs live and exits with the job exit code', async () => {
    const proc = spawnCli(['jobs', 'submit', '--pool', 'fake', '--wait', '--', 'make', 'test'], { server: t.url, token: t.token });
    const j = await runner.claimOne();
    assert.deepEqual(j.commands, ['make test']);
    await runner.start(j);
    await runner.log(j, 1, [['o', 'line 1'], ['e', 'warn 1']]);
    // printed while the job still runs, not at the end
    await waitFor('the first line on stdout', () => proc.stdout() === 'line 1\n');
    await runner.log(j, 2, [['o', 'line 2'], ['s', 'runner note']]);
    await runner.log(j, 3, [['o', 'line 3']]);
    await runner.result(j, 3);
    const r = await proc.done;
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, 'line 1\nline 2\nline 3\n');
    assert.equal(r.stderr, `warn 1\n[runyard] runner note\nrunyard: job ${j.id} failed with exit code 3\n`);
    assert.equal((await job(j.id)).exitCode, 3);
  });

  test('jobs logs -f follows to the end; jobs logs prints what is stored', async () => {
    const id = await submit(['--pool', 'fake', '--', 'build']);
    const proc = spawnCli(['jobs', 'logs', '-f', String(id)], { server: t.url, token: t.token });
    const j = await runner.claimOne();
    assert.equal(j.id, id);
    await runner.start(j);
    await runner.log(j, 1, [['o', 'compiling'], ['e', 'warning: unused']]);
    await waitFor('the first line', () => proc.stdout().includes('compiling\n'));
    await runner.log(j, 2, [['o', 'done']]);
    await runner.result(j, 0);
    const r = await proc.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'compiling\ndone\n');
    assert.equal(r.stderr, 'warning: unused\n');

    const stored = ok(await cli(['jobs', 'logs', String(id)]));
    assert.equal(stored.stdout, 'compiling\ndone\n');
    assert.equal(stored.stderr, 'warning: unused\n');
    const json = JSON.parse(ok(await cli(['jobs', 'logs', String(id), '--json'])).stdout);
    assert.equal(json.state, 'succeeded');
    assert.deepEqual(json.lines.map((l: any) => [l.seq, l.s, l.m]), [[1, 'o', 'compiling'], [1, 'e', 'warning: unused'], [2, 'o', 'done']]);
    const ndjson = ok(await cli(['jobs', 'logs', '-f', String(id), '--json'])).stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(ndjson.length, 4);
    assert.deepEqual(ndjson[3], { end: { state: 'succeeded', exitCode: 0, error: null } });
    assert.match(ok(await cli(['jobs', 'show', String(id)])).stdout, /^state:\s+succeeded\n[\s\S]*^exit code:\s+0$/m);

    const queued = await submit(['--', 'later']);
    const early = ok(await cli(['jobs', 'logs', String(queued)]));
    assert.equal(early.stdout, '');
    assert.match(early.stderr, new RegExp(`job ${queued} is queued; follow it with \`runyard jobs logs -f ${queued}\``));
    fails(await cli(['jobs', 'logs', '-f', '424242']), 1, /job 424242 not found/);
  });

  test('jobs submit --wait resumes after a dropped stream without repeating or losing lines', async () => {
    const proxy = await startDroppingProxy(t.url);
    try {
      const proc = spawnCli(['jobs', 'submit', '--pool', 'fake', '--wait', '--', 'long'], { server: proxy.url, token: t.token });
      const j = await runner.claimOne();
      await runner.start(j);
      await runner.log(j, 1, [['o', 'one']]);
      await waitFor('the reconnect', () => proxy.urls.filter((u) => u.includes('follow=1')).length >= 2);
      await runner.log(j, 2, [['o', 'two']]);
      await runner.log(j, 3, [['o', 'three']]);
      await runner.result(j, 0);
      const r = await proc.done;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'one\ntwo\nthree\n');
      assert.match(r.stderr, /log stream interrupted .*; resuming after line batch 1/);
      const follows = proxy.urls.filter((u) => u.includes('follow=1'));
      assert.match(follows[0]!, /after=0/);
      assert.match(follows[1]!, /after=1/);
    } finally {
      await proxy.close();
    }
  });

  test('jobs submit --wait --json: a cancelled job exits 1 and prints the job', async () => {
    const proc = spawnCli(['jobs', 'submit', '--pool', 'fake', '--wait', '--json', '--', 'sleep', '1000'], { server: t.url, token: t.token });
    const j = await runner.claimOne();
    await runner.start(j);
    await runner.log(j, 1, [['o', 'sleeping']]);
    await waitFor('the line (on stderr with --json)', () => proc.stderr().includes('sleeping\n'));
    const cancel = ok(await cli(['jobs', 'cancel', String(j.id)]));
    assert.match(cancel.stdout, new RegExp(`cancel requested for job ${j.id} \\(running on runner ${runner.id}\\)`));
    await runner.result(j, null, { outcome: 'cancelled' });
    const r = await proc.done;
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout);
    assert.equal(out.job.id, j.id);
    assert.equal(out.job.state, 'cancelled');
    assert.match(r.stderr, new RegExp(`runyard: job ${j.id} cancelled`));
  });

  test('runners list, show and the operator actions', async () => {
    const ops = await FakeRunner.register(t, 'fake', 'ops-runner');
    const list = ok(await cli(['runners', 'list', '--pool', 'fake']));
    assert.match(list.stdout, /^ID\s+NAME\s+POOL\s+STATE\s+JOBS\s+AGE\s+LAST HEARTBEAT\n/);
    assert.match(list.stdout, new RegExp(`^${ops.id.slice(0, 8)}\\s+ops-runner\\s+fake\\s+idle\\s+0/4\\s+\\S+\\s+(now|\\d+s ago)$`, 'm'));
    assert.match(list.stdout, new RegExp(`^${runner.id.slice(0, 8)}\\s+fake-main\\s+fake\\s+idle`, 'm'));
    const listed = JSON.parse(ok(await cli(['runners', 'list', '--json'])).stdout).runners;
    assert.ok(listed.some((x: any) => x.id === ops.id && x.activeJobs === 0));
    assert.match(ok(await cli(['runners', 'list', '--pool', 'batch'])).stdout, /^no runners match\n$/);

    // by ID prefix, by name, by full ID
    const byPrefix = ok(await cli(['runners', 'show', ops.id.slice(0, 8)]));
    assert.match(byPrefix.stdout, new RegExp(`^id:\\s+${ops.id}$`, 'm'));
    assert.match(byPrefix.stdout, /^state:\s+idle \(registered, /m);
    assert.equal(JSON.parse(ok(await cli(['runners', 'show', 'ops-runner', '--json'])).stdout).runner.id, ops.id);

    assert.match(ok(await cli(['runners', 'disable', ops.id])).stdout, /runner ops-runner \(\w{8}\) is disabled; now disabled/);
    fails(await cli(['runners', 'disable', ops.id]), 2, /can only be disabled when idle, busy or offline/);
    assert.match(ok(await cli(['runners', 'enable', 'ops-runner'])).stdout, /now idle/);
    assert.match(ok(await cli(['runners', 'drain', ops.id.slice(0, 8)])).stdout, /is draining; now draining/);
    assert.match(ok(await cli(['runners', 'terminate', ops.id])).stdout, /now draining/);
    assert.match(ok(await cli(['runners', 'delete', ops.id])).stdout, /deleted; its jobs went back to the queue/);
    assert.equal((await t.api('GET', `/api/v1/runners/${ops.id}`)).body.runner.state, 'terminated');
    assert.doesNotMatch(ok(await cli(['runners', 'list'])).stdout, /ops-runner/);
    assert.match(ok(await cli(['runners', 'list', '--all'])).stdout, /ops-runner\s+fake\s+terminated/);

    fails(await cli(['runners', 'show', 'no-such-runner']), 1, /no runner with ID or name "no-such-runner"\nhint: list them/);
    fails(await cli(['runners', 'show', '00000000-0000-4000-8000-000000000000']), 1, /not found\nhint: list them with `runyard runners list --all`/);
  });

  test('events lists the audit trail, filtered', async () => {
    const id = await submit(['--', 'true']);
    ok(await cli(['jobs', 'cancel', String(id)]));
    const r = ok(await cli(['events', '--kind', 'job', '--subject', String(id)]));
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^ID\s+AGE\s+KIND\s+SUBJECT\s+CHANGE\s+REASON\s+BY$/);
    assert.equal(lines.length, 3);
    assert.match(lines[1]!, new RegExp(`job\\s+${id}\\s+queued\\s+submitted`));
    assert.match(lines[2]!, new RegExp(`job\\s+${id}\\s+queued → cancelled\\s+cancelled by operator`));
    const all = JSON.parse(ok(await cli(['events', '--kind', 'runner', '--limit', '2', '--json'])).stdout);
    assert.equal(all.events.length, 2);
    assert.ok(all.events.every((e: any) => e.kind === 'runner'));
    assert.ok(all.nextBefore);
    assert.match(ok(await cli(['events', '--subject', 'nothing-here'])).stdout, /^no events match\n$/);
  });

  test('next to `runyard up` the CLI finds the server and admin token by itself', async () => {
    const home = join(dir, 'up-machine');
    mkdirSync(join(home, '.runyard'), { recursive: true });
    writeFileSync(join(home, '.runyard', 'server.json'), JSON.stringify({ url: t.url, pid: process.pid }) + '\n');
    writeFileSync(join(home, '.runyard', 'admin-token'), t.token + '\n');
    const r = ok(await runCli(['pools', 'list', '--json'], { cwd: home, server: null, token: null }));
    assert.ok(JSON.parse(r.stdout).pools.some((p: any) => p.name === 'fake'));
    // environment variables work too, and an explicit --server wins over the files
    const env = ok(await runCli(['class-sizes', 'list'], { env: { RUNYARD_SERVER: t.url, RUNYARD_TOKEN: t.token }, server: null, token: null }));
    assert.match(env.stdout, /^small/m);
    const port = await closedPort();
    fails(await runCli(['pools', 'list'], { cwd: home, server: `http://127.0.0.1:${port}`, token: null }), 1, new RegExp(`cannot reach the runyard server at http://127.0.0.1:${port}`));
  });
});
