/*
 * Unit tests of the agent's parts that carry logic of their own: backoff, the ping watchdog and
 * control channel (fake clock and sleep, so nothing waits), line splitting and masking, log
 * batching, archive safety, identity and CLI option checks.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Backoff } from '../src/agent/backoff.js';
import { PingWatchdog } from '../src/agent/ping-watchdog.js';
import { ControlChannel } from '../src/agent/control-channel.js';
import { LineSplitter } from '../src/agent/line-splitter.js';
import { Masker } from '../src/agent/masker.js';
import { LogStreamer } from '../src/agent/log-streamer.js';
import { HttpError, NetworkError } from '../src/agent/errors.js';
import { safeExtract } from '../src/agent/archive.js';
import { loadOrCreateIdentity } from '../src/agent/identity.js';
import { StateDir } from '../src/agent/state-dir.js';
import { buildScript } from '../src/agent/process-group.js';
import { resolveAgentOptions } from '../src/cli/agent.js';
import { CliError } from '../src/cli/client.js';
import { silentLogger } from '../src/lib/logger.js';
import type { LogLine } from '../src/protocol/runner.js';
import { makeZip, tarEntry, tarOf } from './helpers/agent.js';

/** A clock and sleep that only move when the test says so. */
class FakeTime {
  now = 1_000_000;
  private timers: { at: number; resolve: () => void }[] = [];
  readonly clock = { now: () => this.now };
  readonly sleep = (ms: number, signal?: AbortSignal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const timer = { at: this.now + ms, resolve };
      this.timers.push(timer);
      signal?.addEventListener('abort', () => {
        this.timers = this.timers.filter((t) => t !== timer);
        resolve();
      }, { once: true });
    });
  /** Moves time forward, firing due timers in order and letting their continuations run. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      await settle();
      const due = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.now = Math.max(this.now, due.at);
      due.resolve();
    }
    this.now = end;
    await settle();
  }
  get pending(): number {
    return this.timers.length;
  }
}

async function settle() {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

describe('backoff', () => {
  test('grows exponentially with jitter in [exp/2, exp], is capped, and resets', () => {
    let r = 0;
    const b = new Backoff({ baseMs: 100, maxMs: 1000, random: () => r });
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [50, 100, 200, 400, 500]);
    r = 1;
    assert.equal(b.next(), 1000);
    assert.equal(b.failures, 6);
    b.reset();
    assert.equal(b.next(), 100);
  });
});

describe('ping watchdog', () => {
  test('expires exactly when nothing arrived for the timeout; a touch moves the deadline', async () => {
    const time = new FakeTime();
    const w = new PingWatchdog(900, time.clock, time.sleep);
    let result: string | undefined;
    void w.run(new AbortController().signal).then((r) => (result = r));
    await time.advance(600);
    w.touch();
    await time.advance(899);
    assert.equal(result, undefined);
    await time.advance(1);
    assert.equal(result, 'expired');
  });

  test('stops when its signal aborts', async () => {
    const time = new FakeTime();
    const ac = new AbortController();
    const p = new PingWatchdog(900, time.clock, time.sleep).run(ac.signal);
    ac.abort();
    assert.equal(await p, 'stopped');
  });
});

describe('control channel', () => {
  /** A fake server: each open() returns an SSE response whose body the test writes to. */
  function fakeServer() {
    const streams: ReadableStreamDefaultController<Uint8Array>[] = [];
    let status = 200;
    const open = async (signal: AbortSignal) => {
      if (status !== 200) return new Response('{}', { status });
      const body = new ReadableStream<Uint8Array>({
        start: (c) => {
          streams.push(c);
          signal.addEventListener('abort', () => c.error(new DOMException('aborted', 'AbortError')), { once: true });
        },
      });
      return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
    };
    const send = (event: string, data: unknown = {}) => streams.at(-1)!.enqueue(new TextEncoder().encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
    return { open, send, opens: () => streams.length, setStatus: (s: number) => (status = s) };
  }

  test('connects on hello, passes events on, reconnects after 3 silent ping intervals', async () => {
    const time = new FakeTime();
    const server = fakeServer();
    const ch = new ControlChannel({ open: server.open, pingIntervalMs: 300, clock: time.clock, sleep: time.sleep, backoff: new Backoff({ baseMs: 100, maxMs: 100, random: () => 1 }), log: silentLogger });
    const seen: string[] = [];
    ch.on('connected', () => seen.push('connected'));
    ch.on('disconnected', (r) => seen.push(`disconnected: ${r}`));
    ch.on('event', (name, data) => seen.push(`${name} ${JSON.stringify(data)}`));
    ch.start();
    await settle();
    assert.equal(ch.connected, false, 'not connected before hello');
    server.send('hello', { state: 'idle' });
    await settle();
    assert.equal(ch.connected, true);
    server.send('cancel', { jobId: 7 });
    await time.advance(800);
    server.send('ping', { at: 1 });
    await time.advance(899);
    assert.equal(ch.connected, true, 'a ping keeps it alive');
    await time.advance(1);
    assert.equal(ch.connected, false);
    assert.deepEqual(seen, ['connected', 'hello {"state":"idle"}', 'cancel {"jobId":7}', 'ping {"at":1}', 'disconnected: no event for 900ms']);
    await time.advance(100); // backoff
    assert.equal(server.opens(), 2, 'reconnected after the backoff');
    server.send('hello', { state: 'disabled' });
    await settle();
    assert.equal(ch.connected, true);
    await ch.close();
  });

  test('410 ends the channel with "gone"; 401 with "unauthorized"; 5xx is retried', async () => {
    for (const [status, event] of [[410, 'gone'], [401, 'unauthorized']] as const) {
      const time = new FakeTime();
      const server = fakeServer();
      server.setStatus(status);
      const ch = new ControlChannel({ open: server.open, pingIntervalMs: 300, clock: time.clock, sleep: time.sleep, backoff: new Backoff({ baseMs: 100, maxMs: 100 }), log: silentLogger });
      let fired = false;
      ch.on(event, () => (fired = true));
      ch.start();
      await settle();
      assert.equal(fired, true, event);
      assert.equal(time.pending, 0, 'no retry scheduled');
      await ch.close();
    }
    const time = new FakeTime();
    const server = fakeServer();
    let calls = 0;
    const open = async (s: AbortSignal) => (++calls < 3 ? new Response('down', { status: 503 }) : server.open(s));
    const ch = new ControlChannel({ open, pingIntervalMs: 300, clock: time.clock, sleep: time.sleep, backoff: new Backoff({ baseMs: 100, maxMs: 100, random: () => 1 }), log: silentLogger });
    ch.start();
    await time.advance(250);
    assert.equal(calls, 3);
    server.send('hello');
    await settle();
    assert.equal(ch.connected, true);
    await ch.close();
  });
});

describe('line splitter and masking', () => {
  test('reassembles lines and UTF-8 across chunks, strips CR, flushes a last partial line', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    const euro = Buffer.from('€');
    s.write(Buffer.from('one\r\ntw'));
    s.write(Buffer.concat([Buffer.from('o '), euro.subarray(0, 1)]));
    s.write(Buffer.concat([euro.subarray(1), Buffer.from('\n\nnul\u0000here\nlast')]));
    s.end();
    assert.deepEqual(lines, ['one', 'two €', '', 'nul\ufffdhere', 'last']);
  });

  test('splits very long lines into pieces, never between a surrogate pair', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l), new Masker([]), 10);
    s.write('abcdefghi😀xyz\n');
    assert.deepEqual(lines, ['abcdefghi', '😀xyz']);
    lines.length = 0;
    s.write('0123456789'.repeat(5)); // no newline yet: sent in pieces as it grows
    assert.ok(lines.length >= 4);
    s.end();
    assert.equal(lines.join(''), '0123456789'.repeat(5));
    assert.ok(lines.every((l) => l.length <= 10));
  });

  test('masks secrets, also when a long unterminated line carries one across chunk boundaries', () => {
    const secret = 'sup3r-s3cret';
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l), new Masker([secret]), 16);
    s.write(`a=${secret} b=${secret}\n`);
    const long = 'x'.repeat(13) + secret + 'y'.repeat(13) + secret;
    for (const ch of long) s.write(ch); // worst case: one character at a time
    s.end();
    const all = lines.join('\n');
    assert.ok(!all.includes(secret) && !all.includes('s3cret') && !all.includes('sup3r'), all);
    assert.equal(lines[0], 'a=*** b=***');
    assert.equal(lines.slice(1).join(''), 'x'.repeat(13) + '***' + 'y'.repeat(13) + '***');
  });

  test('masks multi-line secrets line by line, and deep inside JSON (keys too)', () => {
    const m = new Masker(['line-one-secret\nline-two-secret', 'tok']);
    assert.equal(m.mask('got line-two-secret'), 'got ***');
    assert.deepEqual(m.maskDeep({ tok: ['a tok b', 1, null, { nested: 'line-one-secret' }] }), { '***': ['a *** b', 1, null, { nested: '***' }] });
  });
});

describe('log streamer', () => {
  function streamer(send: (seq: number, lines: LogLine[]) => Promise<{ cancel: boolean }>, extra: Partial<ConstructorParameters<typeof LogStreamer>[0]> = {}) {
    const time = new FakeTime();
    const events: string[] = [];
    const s = new LogStreamer({
      send,
      clock: time.clock,
      sleep: async () => {}, // flush timers and backoffs elapse at once
      backoff: new Backoff({ baseMs: 1, maxMs: 1 }),
      log: silentLogger,
      onCancel: () => events.push('cancel'),
      onLost: () => events.push('lost'),
      maxBatchLines: 100,
      ...extra,
    });
    return { s, events };
  }

  test('sends ordered batches with consecutive seqs; retries a failed batch with the same seq', async () => {
    const got: { seq: number; n: number; first: string }[] = [];
    let failures = 2;
    const { s } = streamer(async (seq, lines) => {
      if (seq === 2 && failures-- > 0) throw failures ? new NetworkError('down') : new HttpError(503, 'restarting');
      got.push({ seq, n: lines.length, first: lines[0]!.m });
      return { cancel: false };
    });
    for (let i = 1; i <= 250; i++) s.push('o', String(i));
    assert.equal(await s.close(), 'ok');
    assert.deepEqual(got, [
      { seq: 1, n: 100, first: '1' },
      { seq: 2, n: 100, first: '101' },
      { seq: 3, n: 50, first: '201' },
    ]);
    assert.equal(s.sentLines, 250);
  });

  test('409 means the claim is lost: everything is dropped; cancel in an answer is passed on', async () => {
    const lost = streamer(async () => {
      throw new HttpError(409, 'no longer holds the claim');
    });
    lost.s.push('o', 'x');
    assert.equal(await lost.s.close(), 'lost');
    assert.deepEqual(lost.events, ['lost']);

    const cancel = streamer(async () => ({ cancel: true }));
    cancel.s.push('o', 'x');
    await cancel.s.close();
    assert.deepEqual(cancel.events, ['cancel']);
  });

  test('keeps each batch under the byte limit and pauses the job while the backlog is high', async () => {
    const sizes: number[] = [];
    const pressure: boolean[] = [];
    const { s } = streamer(
      async (_seq, lines) => {
        sizes.push(Buffer.byteLength(JSON.stringify({ attempt: 1, seq: 1, lines })));
        return { cancel: false };
      },
      { maxBatchBytes: 64 * 1024, highWaterBytes: 128 * 1024, maxBatchLines: 10_000, onPressure: (p) => pressure.push(p) },
    );
    for (let i = 0; i < 20; i++) s.push('o', '"'.repeat(10_000)); // escapes double the JSON size
    await s.close();
    assert.ok(sizes.every((n) => n < 64 * 1024 + 1024), `batch sizes ${sizes}`);
    assert.deepEqual(pressure, [true, false]);
  });
});

describe('archive extraction', () => {
  const base = mkdtempSync(join(tmpdir(), 'runyard-archive-'));
  let n = 0;
  async function extract(name: string, content: Buffer, kind: 'zip' | 'tar' | 'tgz') {
    const dir = join(base, `case-${++n}`);
    const dest = join(dir, 'work');
    mkdirSync(dest, { recursive: true });
    writeFileSync(join(dir, name), content);
    try {
      return { dest, dir, result: await safeExtract(join(dir, name), kind, dest), error: undefined as Error | undefined };
    } catch (err) {
      return { dest, dir, result: undefined, error: err as Error };
    }
  }

  test('extracts a good zip and tar.gz, with directories, modes and inside symlinks', async () => {
    const zip = await extract('ok.zip', makeZip([{ name: 'dir/' }, { name: 'dir/a.txt', data: 'A' }, { name: 'link', symlinkTo: 'dir/a.txt' }]), 'zip');
    assert.equal(zip.error, undefined);
    assert.equal(readFileSync(join(zip.dest, 'link'), 'utf8'), 'A');
    const tgz = await extract('ok.tar.gz', gzipSync(tarOf(tarEntry('d/', { type: '5' }), tarEntry('d/b.txt', { data: 'B' }), tarEntry('d/hard', { type: '1', link: 'd/b.txt' }))), 'tgz');
    assert.equal(tgz.error, undefined);
    assert.equal(readFileSync(join(tgz.dest, 'd/hard'), 'utf8'), 'B');
  });

  const hostile: [string, string, Buffer, 'zip' | 'tar'][] = [
    ['zip-slip with ../', 'a.zip', makeZip([{ name: 'ok.txt', data: 'x' }, { name: '../../escaped.txt', data: 'x' }]), 'zip'],
    ['zip with an absolute path', 'b.zip', makeZip([{ name: '/tmp/abs-escaped.txt', data: 'x' }]), 'zip'],
    ['zip symlink to an absolute path', 'c.zip', makeZip([{ name: 'l', symlinkTo: '/etc' }]), 'zip'],
    ['zip symlink climbing out', 'd.zip', makeZip([{ name: 'sub/l', symlinkTo: '../../..' }]), 'zip'],
    ['tar path with ../', 'e.tar', tarOf(tarEntry('ok.txt', { data: 'x' }), tarEntry('../escaped.txt', { data: 'x' })), 'tar'],
    ['tar absolute path', 'f.tar', tarOf(tarEntry('/tmp/abs-escaped.txt', { data: 'x' })), 'tar'],
    ['tar symlink outside, then a file through it', 'g.tar', tarOf(tarEntry('esc', { type: '2', link: '/tmp' }), tarEntry('esc/through.txt', { data: 'x' })), 'tar'],
    ['tar hard link to a file outside', 'h.tar', tarOf(tarEntry('h', { type: '1', link: '../../../../etc/passwd' })), 'tar'],
    ['tar device file', 'i.tar', tarOf(tarEntry('dev', { type: '3' })), 'tar'],
    ['tar symlink chain escaping only on disk', 'j.tar', tarOf(tarEntry('a', { type: '2', link: '.' }), tarEntry('b', { type: '2', link: 'a/..' })), 'tar'],
  ];
  for (const [what, name, content, kind] of hostile) {
    test(`refuses ${what}`, async () => {
      const r = await extract(name, content, kind);
      assert.ok(r.error, 'must be refused');
      assert.match(r.error.message, /archive refused/);
      assert.deepEqual(readdirSync(r.dir).sort(), [name, 'work'].sort(), 'nothing written beside the working directory');
      assert.equal(existsSync('/tmp/abs-escaped.txt'), false);
      assert.equal(existsSync('/tmp/through.txt'), false);
    });
  }
});

describe('identity and state dir', () => {
  test('is created once with mode 600 and reused; a requested id replaces it', () => {
    const dir = new StateDir(mkdtempSync(join(tmpdir(), 'runyard-state-')));
    dir.lock();
    const a = loadOrCreateIdentity(dir.identityFile);
    assert.equal(a.created, true);
    assert.equal(statSync(dir.identityFile).mode & 0o777, 0o600);
    assert.equal(statSync(dir.path).mode & 0o777, 0o700);
    const b = loadOrCreateIdentity(dir.identityFile);
    assert.deepEqual(b, { identity: a.identity, created: false });
    const wanted = '0b7a4b0e-5d1e-4c1e-9f00-1234567890ab';
    const c = loadOrCreateIdentity(dir.identityFile, wanted.toUpperCase());
    assert.equal(c.identity.id, wanted);
    assert.notEqual(c.identity.privateKey, a.identity.privateKey);
    dir.unlock();
  });

  test('a state dir held by a live agent is refused; a stale lock is taken over', () => {
    const path = mkdtempSync(join(tmpdir(), 'runyard-state-'));
    writeFileSync(join(path, 'agent.lock'), `${process.ppid}\n`);
    assert.throws(() => new StateDir(path).lock(), /in use by another agent/);
    writeFileSync(join(path, 'agent.lock'), '999999999\n');
    const d = new StateDir(path);
    d.lock();
    d.removeOwned();
    assert.equal(existsSync(path), false, 'an empty state dir is removed');
  });
});

describe('commands and CLI options', () => {
  test('commands are joined so the first failure stops the rest and sets the exit code', () => {
    const run = (cmds: string[]) => spawnSync('/bin/sh', ['-c', buildScript(cmds)], { encoding: 'utf8' });
    const r = run(['echo a # comment', 'cd /tmp', 'echo "$PWD"', 'false', 'echo never']);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, 'a\n/tmp\n');
    assert.equal(run(['exit 7']).status, 7);
  });

  const env = { RUNYARD_REGISTRATION_TOKEN: 'tok' };
  const bad = (flags: Record<string, string>, e: NodeJS.ProcessEnv, option: RegExp) => {
    assert.throws(() => resolveAgentOptions(flags, e), (err: unknown) => err instanceof CliError && err.exitCode === 2 && option.test(err.message));
  };

  test('bad options fail with exit code 2 and name the option', () => {
    bad({}, {}, /--token is required/);
    bad({ server: 'ftp://x' }, env, /--server must be an http\(s\) URL/);
    bad({ id: 'nope' }, env, /--id must be a UUID/);
    bad({ healthPort: '70000' }, env, /--health-port/);
    bad({}, { ...env, RUNYARD_HEALTH_PORT: 'x' }, /--health-port/);
    bad({ gracePeriod: 'soon' }, env, /--grace-period/);
    bad({ name: ' ' }, env, /--name/);
  });

  test('flags win over env; env fills in; defaults are sensible', () => {
    const o = resolveAgentOptions(
      { server: 'http://flag:1', labels: 'a, b,,c', gracePeriod: '2s' },
      { ...env, RUNYARD_SERVER: 'http://env:2', RUNYARD_STATE_DIR: '/s', RUNYARD_RUNNER_NAME: 'n', RUNYARD_RUNNER_ID: '0B7A4B0E-5D1E-4C1E-9F00-1234567890AB', RUNYARD_HEALTH_PORT: '0' },
    );
    assert.equal(o.server, 'http://flag:1');
    assert.equal(o.registrationToken, 'tok');
    assert.deepEqual(o.labels, ['a', 'b', 'c']);
    assert.equal(o.gracePeriodMs, 2000);
    assert.equal(o.stateDir, '/s');
    assert.equal(o.workDir, '/s/work');
    assert.equal(o.name, 'n');
    assert.equal(o.healthPort, 0);
    const d = resolveAgentOptions({}, env);
    assert.equal(d.gracePeriodMs, 10_000);
    assert.equal(d.healthPort, undefined, 'health server off by default');
    assert.match(d.stateDir, /\.runyard-agent$/);
  });

  test('the real command exits 2 on a bad option and documents every option in --help', () => {
    const bin = resolve(import.meta.dirname, '../bin/runyard.js');
    const r = spawnSync(process.execPath, [bin, 'agent', '--token', 't', '--grace-period', 'later'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--grace-period/);
    const help = spawnSync(process.execPath, [bin, 'agent', '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0);
    for (const o of ['--server', '--token', '--state-dir', '--work-dir', '--name', '--labels', '--id', '--health-port', '--grace-period']) assert.ok(help.stdout.includes(o), o);
  });
});
