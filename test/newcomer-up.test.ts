/*
 * Issue 19, `runyard up` and terminal output: a second `up` on the same data dir names the
 * process holding it; a taken port fails before anything is created; logs are readable lines on
 * a terminal and JSON otherwise; shutting down warns only about runners that really did not
 * stop; a follow that keeps failing says so once. Real `runyard up` processes (embedded PGlite
 * on disk), the real CLI, `script` for a pseudo-terminal.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor, startTestServer } from './helpers/server.js';
import { cleanupClis, FakeRunner, runCli, spawnCli, type RunningCli } from './helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'runyard-newcomer-up-'));
const started: RunningCli[] = [];

after(async () => {
  for (const u of started) u.proc.kill('SIGKILL');
  cleanupClis();
  rmSync(tmp, { recursive: true, force: true });
});

/** `runyard up` in `dir` on a free port; resolves once it serves. */
async function up(dir: string, args: string[] = []): Promise<{ cli: RunningCli; url: string; token: string }> {
  const cli = spawnCli(['up', '--port', '0', ...args], { cwd: dir, server: null, token: null, timeoutMs: 180_000 });
  started.push(cli);
  const url = (await waitFor(`runyard up in ${dir}\n${cli.stderr()}`, () => /runyard is up at (\S+)/.exec(cli.stdout())?.[1], 60_000))!;
  return { cli, url, token: readFileSync(join(dir, '.runyard', 'admin-token'), 'utf8').trim() };
}

async function stop(cli: RunningCli) {
  cli.proc.kill('SIGTERM');
  const r = await cli.done;
  assert.equal(r.code, 0, r.stderr);
  return r;
}

describe('newcomer: runyard up', () => {
  test('8. a second up on the same data dir names the process that holds it; the first keeps running', async () => {
    const dir = mkdtempSync(join(tmp, 'same-'));
    const first = await up(dir);
    const second = await runCli(['up', '--port', '0'], { cwd: dir, server: null, token: null, timeoutMs: 60_000 });
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`error: data dir ${join(dir, '.runyard').replace(/[.]/g, '\\.')} is in use by another runyard \\(pid ${first.cli.proc.pid}, serving ${first.url}\\); stop it first, or give this one its own --data-dir`));
    assert.doesNotMatch(second.stderr, /Aborted/);
    const health = await fetch(`${first.url}/healthz`);
    assert.equal(health.status, 200);
    await stop(first.cli);
    assert.ok(!existsSync(join(dir, '.runyard', 'store.lock')), 'lock released on shutdown');
  });

  test('8. up on a taken port fails before creating a store or printing a token', async () => {
    const taken = createServer();
    await new Promise<void>((ok) => taken.listen(0, '127.0.0.1', ok));
    const port = (taken.address() as AddressInfo).port;
    try {
      const dir = mkdtempSync(join(tmp, 'port-'));
      const r = await runCli(['up', '--port', String(port)], { cwd: dir, server: null, token: null, timeoutMs: 60_000 });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`error: port ${port} on 127\\.0\\.0\\.1 is already in use; pick another with --port \\(nothing was created\\)`));
      assert.doesNotMatch(r.stdout, /Admin token/);
      assert.ok(!existsSync(join(dir, '.runyard', 'admin-token')), 'no admin token');
      assert.ok(!existsSync(join(dir, '.runyard', 'data')), 'no store');
    } finally {
      taken.close();
    }
  });

  test('4. a config pool whose distribution is nowhere stops up with exit 2 naming the field; a file next to the config is imported', async () => {
    const dir = mkdtempSync(join(tmp, 'dist-'));
    writeFileSync(join(dir, 'runyard.yaml'), 'pools:\n  - name: local\n    provider: process\n  - name: shipped\n    provider: process\n    distribution: app.tar.gz\n');
    const refused = await runCli(['up', '--port', '0', '--config', 'runyard.yaml'], { cwd: dir, server: null, token: null, timeoutMs: 90_000 });
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /error: distribution app\.tar\.gz of pool shipped is not in the artifact store; push it first .*, or put the file app\.tar\.gz next to the config .* \(field: pools\[1\]\.distribution\)/);
    writeFileSync(join(dir, 'app.tar.gz'), 'archive bytes');
    const ok = await up(dir, ['--config', 'runyard.yaml']);
    const list = await fetch(`${ok.url}/api/v1/artifacts`, { headers: { authorization: `Bearer ${ok.token}` } });
    assert.deepEqual((await list.json()).artifacts.map((a: any) => [a.name, a.size]), [['app.tar.gz', 13]]);
    await stop(ok.cli);
  });

  test('9. on a terminal the server logs readable lines, JSON otherwise; shutdown warns only about runners that did not stop', async () => {
    const dir = mkdtempSync(join(tmp, 'tty-'));
    writeFileSync(join(dir, 'runyard.yaml'), 'pools:\n  - name: warm\n    provider: process\n    minIdle: 1\n    maxRunners: 1\n');
    // `script` gives the server a pseudo-terminal as stdout and stderr
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, NO_COLOR: '1', TERM: 'dumb' };
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(join(import.meta.dirname, '../bin/runyard.js'))} up --port 0 --config runyard.yaml`;
    const tty = spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: dir, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    tty.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((ok) => tty.once('exit', (code) => ok(code)));
    try {
      const url = (await waitFor(`up on a terminal\n${out}`, () => /runyard is up at (\S+)/.exec(out)?.[1], 60_000))!;
      await waitFor(`the readable line\n${out}`, () => /^\d\d:\d\d:\d\d INFO  runyard is up  url=http:\/\/127\.0\.0\.1:\d+ store=pglite pools=\["warm"\]\r?$/m.test(out), 10_000);
      assert.doesNotMatch(out, /\{"level":/);
      // the warm runner comes up idle
      const token = readFileSync(join(dir, '.runyard', 'admin-token'), 'utf8').trim();
      const idle = async () => (await (await fetch(`${url}/api/v1/runners?pool=warm`, { headers: { authorization: `Bearer ${token}` } })).json()).runners.find((r: any) => r.state === 'idle');
      await waitFor('an idle warm runner', idle, 60_000, 200);
      const { pid } = JSON.parse(readFileSync(join(dir, '.runyard', 'server.json'), 'utf8'));
      process.kill(pid, 'SIGTERM');
      assert.equal(await exited, 0, out);
      assert.match(out, /runyard: shutting down/);
      assert.doesNotMatch(out, /did not stop within its grace period/);
      assert.equal(readdirSync(join(dir, '.runyard', 'runners')).length, 0, 'the runner stopped and was cleaned up');
    } finally {
      tty.kill('SIGKILL');
    }

    // the same server on a pipe: JSON lines
    const piped = await up(mkdtempSync(join(tmp, 'pipe-')));
    await waitFor('the JSON line', () => piped.cli.stderr().split('\n').some((l) => l.startsWith('{') && JSON.parse(l).msg === 'runyard is up'), 10_000);
    await stop(piped.cli);
  });

  test('9. --wait says "log stream interrupted" once, not at every retry', async () => {
    const t = await startTestServer({ loops: false, config: { pools: [{ name: 'fake', provider: 'process', maxRunners: 0 }] } });
    // a proxy that answers 503 to every log follow after the first, until `open` is set
    let follows = 0;
    let open = false;
    const proxy = http.createServer((req, res) => {
      const follow = (req.url ?? '').includes('follow=1');
      if (follow && follows++ > 0 && !open) {
        res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"unavailable","message":"down"}}');
        return;
      }
      const upstream = http.request(t.url + req.url, { method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        res.flushHeaders();
        // the first stream is cut after its first log event
        r.on('data', (chunk: Buffer) => {
          res.write(chunk);
          if (follow && follows === 1 && chunk.toString().includes('event: log')) res.socket?.destroy();
        });
        r.on('end', () => res.end());
        r.on('error', () => res.destroy());
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', ok));
    try {
      const runner = await FakeRunner.register(t, 'fake');
      const cli = spawnCli(['jobs', 'submit', '--pool', 'fake', '--wait', 'long'], { server: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, token: t.token, timeoutMs: 60_000 });
      const j = await runner.claimOne();
      await runner.start(j);
      await runner.log(j, 1, [['o', 'one']]);
      await waitFor('several refused retries', () => follows >= 5, 40_000);
      open = true;
      await runner.log(j, 2, [['o', 'two']]);
      await runner.result(j, 0);
      const r = await cli.done;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'one\ntwo\n');
      assert.equal(r.stderr.match(/log stream interrupted/g)?.length, 1, r.stderr);
    } finally {
      proxy.closeAllConnections();
      proxy.close();
      await t.close();
    }
  });
});
