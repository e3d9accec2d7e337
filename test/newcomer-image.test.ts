/*
 * Issue 19, item 5: `runyard image build` assembles the runner image on a real podman engine
 * (its own API service on a private socket, runc as runtime, as test/helpers/podman.ts starts it)
 * from this installation, without a registry; the image's agent and shell run.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startService, type PodmanService } from './helpers/podman.js';
import { cleanupClis, runCli } from './helpers/cli.js';

const TAG = `localhost/runyard-newcomer-image:${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'runyard-image-test-'));
const conf = join(dir, 'containers.conf');
writeFileSync(conf, '[engine]\nruntime = "runc"\n');
const env = { ...process.env, CONTAINERS_CONF: conf };
const socket = join(dir, 'podman.sock');
let service: PodmanService;

const podman = (...args: string[]) => spawnSync('podman', args, { env, encoding: 'utf8', maxBuffer: 64 << 20 });

describe('newcomer: runyard image build', () => {
  before(async () => {
    service = await startService(socket, env);
  });
  after(async () => {
    podman('rmi', '-f', TAG);
    cleanupClis();
    await service?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('5. builds the runner image on the engine with progress; the agent and a shell run in it', async () => {
    const r = await runCli(['image', 'build', '--tag', TAG], { env: { RUNYARD_CONTAINER_HOST: `unix://${socket}` }, server: null, token: null, timeoutMs: 900_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${TAG}\n`);
    assert.match(r.stderr, /^assembling the runner: the agent bundle \(Node\.js v20/m);
    assert.match(r.stderr, new RegExp(`the engine at unix://${socket.replace(/[.]/g, '\\.')} builds ${TAG.replace(/[.]/g, '\\.')}`));
    assert.match(r.stderr, /FROM scratch/, 'the engine\'s build steps are shown');
    assert.match(r.stderr, new RegExp(`^built ${TAG.replace(/[.]/g, '\\.')} \\([0-9a-f]{12}\\) in [\\d.]+s; use it in a pool: provider: container, image: `, 'm'));
    // the entrypoint is the agent
    const help = podman('run', '--rm', '--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=1000:1000', TAG, '--help');
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /run a runner agent: register with a server/);
    // and jobs get a shell with basic tools
    const sh = podman('run', '--rm', '--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=1000:1000', '--entrypoint', '/bin/sh', TAG, '-c', 'echo from $(uname -s); ls /opt/runyard');
    assert.equal(sh.status, 0, sh.stderr);
    assert.equal(sh.stdout, 'from Linux\napp\nnode\n');
  });

  test('5. an unreachable engine or a bad tag stops with what to do', async () => {
    const down = await runCli(['image', 'build'], { env: { RUNYARD_CONTAINER_HOST: `unix://${join(dir, 'nothing.sock')}` }, server: null, token: null });
    assert.equal(down.code, 1);
    assert.match(down.stderr, /error: cannot reach the container engine at unix:\/\/.*nothing\.sock \(ENOENT\)\nhint: start one \(podman: `podman system service/);
    const badTag = await runCli(['image', 'build', '--tag', 'Not A Tag'], { server: null, token: null });
    assert.equal(badTag.code, 2);
    assert.match(badTag.stderr, /--tag must be an image name like runyard-runner:latest/);
  });
});
