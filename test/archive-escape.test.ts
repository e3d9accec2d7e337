/*
 * Archive extraction against hostile distributions (issue 13, hole 2): the symlink chain that
 * escaped only on disk, links made through links, zip and tar bombs, truncated archives, and
 * setuid/setgid bits. Each archive is built byte by byte (test/helpers/agent.ts), then once
 * through a real agent whose job writes where the chain points.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { safeExtract, type ArchiveKind } from '../src/agent/archive.js';
import { killAllAgents, makeZip, poolWithToken, pushArtifact, startAgent, submit, tarEntry, tarOf, waitForJob, type ZipEntry } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const base = mkdtempSync(join(tmpdir(), 'runyard-archive-escape-'));
after(() => rmSync(base, { recursive: true, force: true }));

/** The chain: d0/…/d19/L → ../×20 (the root itself), then d0/…/d19/L/esc → ../×21 + target. */
function chain(target: string): { dirs: string; link: string; esc: string; escTarget: string } {
  const dirs = Array.from({ length: 20 }, (_, i) => `d${i}`).join('/');
  return { dirs, link: `${dirs}/L`, esc: `${dirs}/L/esc`, escTarget: '../'.repeat(21) + target.replace(/^\//, '') };
}
const chainTar = (target: string) => {
  const c = chain(target);
  return gzipSync(tarOf(tarEntry(`${c.dirs}/`, { type: '5' }), tarEntry(c.link, { type: '2', link: '../'.repeat(20) }), tarEntry(c.esc, { type: '2', link: c.escTarget })));
};
const chainZip = (target: string) => {
  const c = chain(target);
  return makeZip([{ name: `${c.dirs}/` }, { name: c.link, symlinkTo: '../'.repeat(20) }, { name: c.esc, symlinkTo: c.escTarget }]);
};

let n = 0;
async function extract(content: Buffer, kind: ArchiveKind, limits?: Parameters<typeof safeExtract>[3]) {
  const dir = join(base, `case-${++n}`);
  const dest = join(dir, 'work');
  mkdirSync(dest, { recursive: true });
  const file = join(dir, `archive.${kind === 'tgz' ? 'tar.gz' : kind}`);
  writeFileSync(file, content);
  try {
    return { dest, dir, result: await safeExtract(file, kind, dest, limits), error: undefined as Error | undefined };
  } catch (err) {
    return { dest, dir, result: undefined, error: err as Error };
  }
}

describe('archive escape', () => {
  const outside = () => `/tmp/runyard-escaped-${randomBytes(4).toString('hex')}`;

  for (const [kind, make] of [['tgz', chainTar], ['zip', chainZip]] as const) {
    test(`${kind}: the symlink chain from the issue is refused before anything is written`, async () => {
      const target = outside();
      const r = await extract(make(target), kind);
      assert.ok(r.error, 'must be refused');
      assert.match(r.error.message, /archive refused: entry .*L\/esc.* lies below the archive's symlink/);
      assert.deepEqual(readdirSync(r.dest), [], 'nothing extracted');
      assert.equal(existsSync(target), false);
    });
  }

  const dangling: [string, Buffer, ArchiveKind][] = [
    ['tgz', gzipSync(tarOf(tarEntry('a', { type: '2', link: '.' }), tarEntry('b', { type: '2', link: 'a/../not-yet-there' }))), 'tgz'],
    ['zip', makeZip([{ name: 'a', symlinkTo: '.' }, { name: 'b', symlinkTo: 'a/../not-yet-there' }]), 'zip'],
  ];
  for (const [what, content, kind] of dangling) {
    test(`${what}: a link that leaves only on disk, to a target that does not exist yet, is refused`, async () => {
      const r = await extract(content, kind);
      assert.ok(r.error, 'must be refused');
      assert.match(r.error.message, /archive refused: symlink "b" resolves outside/);
    });
  }

  test('links that stay inside on disk, dangling ones included, are kept', async () => {
    const r = await extract(gzipSync(tarOf(tarEntry('d/', { type: '5' }), tarEntry('d/f', { data: 'x' }), tarEntry('up', { type: '2', link: 'd/..' }), tarEntry('later', { type: '2', link: 'up/d/made-by-the-job' }))), 'tgz');
    assert.equal(r.error, undefined, r.error?.message);
    assert.deepEqual(readdirSync(r.dest).sort(), ['d', 'later', 'up']);
  });

  test('zip and tar bombs are refused by total size and by ratio, nothing written', async () => {
    const zeros = Buffer.alloc(96 * 1024 * 1024);
    const zip = await extract(makeZip([{ name: 'ok.txt', data: 'x' }, { name: 'bomb.bin', data: zeros, deflate: true }]), 'zip');
    assert.match(zip.error?.message ?? '', /archive refused: it would extract \d+ bytes from \d+ .*compression bomb/);
    assert.deepEqual(readdirSync(zip.dest), []);
    const tgz = await extract(gzipSync(tarOf(tarEntry('bomb.bin', { data: zeros }))), 'tgz');
    assert.match(tgz.error?.message ?? '', /archive refused: .*(compression bomb|decompression ratio)/);
    assert.deepEqual(readdirSync(tgz.dest), []);
    const limits = { maxBytes: 1000, maxRatio: 1e9, ratioFloorBytes: 1e12, maxEntries: 10 };
    assert.match((await extract(makeZip([{ name: 'big', data: Buffer.alloc(1001) }]), 'zip', limits)).error?.message ?? '', /more than the 1000 allowed/);
    const many: ZipEntry[] = Array.from({ length: 11 }, (_, i) => ({ name: `f${i}`, data: 'x' }));
    assert.match((await extract(makeZip(many), 'zip', limits)).error?.message ?? '', /11 entries, more than the 10 allowed/);
  });

  test('truncated archives are refused', async () => {
    const data = randomBytes(40_000).toString('hex');
    const first = tarEntry('a.txt', { data });
    const tar = tarOf(first, tarEntry('b.txt', { data }));
    const zip = makeZip([{ name: 'a.txt', data }, { name: 'b.txt', data }]);
    for (const [what, content, kind] of [
      ['tar cut at an entry boundary', tar.subarray(0, first.length), 'tar'],
      ['tar cut inside a header', tar.subarray(0, first.length + 300), 'tar'],
      ['tar.gz of a tar cut at an entry boundary', gzipSync(tar.subarray(0, first.length)), 'tgz'],
      ['tar cut inside an entry', tar.subarray(0, 50_000), 'tar'],
      ['tar.gz cut short', gzipSync(tar).subarray(0, 40_000), 'tgz'],
      ['zip cut short', zip.subarray(0, zip.length - 30), 'zip'],
    ] as const) {
      const r = await extract(content, kind);
      assert.ok(r.error, `${what}: must be refused`);
      assert.match(r.error.message, /archive refused/, what);
    }
  });

  test('setuid, setgid and sticky bits are dropped', async () => {
    const tgz = await extract(gzipSync(tarOf(tarEntry('d/', { type: '5', mode: 0o3777 }), tarEntry('d/suid', { data: '#!/bin/sh\n', mode: 0o6755 }))), 'tgz');
    assert.equal(tgz.error, undefined, tgz.error?.message);
    assert.equal(statSync(join(tgz.dest, 'd/suid')).mode & 0o7000, 0, 'file');
    assert.equal(statSync(join(tgz.dest, 'd')).mode & 0o7000, 0, 'directory');
    assert.equal(statSync(join(tgz.dest, 'd/suid')).mode & 0o100, 0o100, 'still executable');
    const zip = await extract(makeZip([{ name: 'suid', data: '#!/bin/sh\n', mode: 0o6755 }]), 'zip');
    assert.equal(zip.error, undefined, zip.error?.message);
    assert.equal(statSync(join(zip.dest, 'suid')).mode & 0o7000, 0);
  });
});

describe('archive escape through a real agent', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ store: 'postgres', loops: false, config: { runner: { heartbeatInterval: 300, pingInterval: 300 } } });
  });
  after(async () => {
    await killAllAgents();
    await t?.close();
  });

  test('a job writing to the chain\'s link never creates a file outside its work dir', async () => {
    const target = `/tmp/runyard-escaped-${randomBytes(4).toString('hex')}`;
    await pushArtifact(t, 'chain.tar.gz', chainTar(target));
    const agent = startAgent({ server: t.url, token: await poolWithToken(t, { name: 'chain', distribution: 'chain.tar.gz' }) });
    await agent.waitForLog('ready for jobs');
    const c = chain(target);
    const job = await submit(t, { pool: 'chain', command: `echo pwned > ${c.esc}` });
    const done = await waitForJob(t, job.id);
    assert.equal(done.state, 'failed');
    assert.match(done.error, /archive refused/);
    assert.equal(existsSync(target), false, 'nothing written outside');
  });
});
