/*
 * A real podman engine for container-provider tests: its own Docker-compatible API service on a
 * private unix socket, runc as the runtime (through a containers.conf in a temp dir, nothing
 * global is changed), and a runner image assembled from this machine (no registry is reachable):
 * the self-contained agent bundle (scripts/bundle-agent.mjs) plus dash as /bin/sh.
 *
 * When podman is missing or does not work, startPodman() throws with a message saying so: the
 * tests fail loudly instead of skipping.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleAgent, sharedLibraries } from '../../scripts/bundle-agent.mjs';
import { AGENT_DIR, AGENT_ENTRYPOINT } from '../../src/providers/container/dynamic-images.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const TEST_IMAGE_REPO = 'localhost/runyard-runner-test';
export const BASE_IMAGE_REPO = 'localhost/runyard-test-base';

export interface Podman {
  /** DOCKER_HOST-style address of the API service, unix:///tmp/runyard-podman-<pid>.sock */
  host: string;
  socket: string;
  /** The runner image, built (or found cached) for this dist. */
  image: string;
  /** Milliseconds the image build took (0 when cached). */
  imageBuildMs: number;
  /** Environment for podman CLI calls (CONTAINERS_CONF). */
  env: NodeJS.ProcessEnv;
  /** Runs the podman CLI; throws on a non-zero exit. */
  cli: (...args: string[]) => string;
  close: () => Promise<void>;
}

export async function startPodman(): Promise<Podman> {
  const which = spawnSync('sh', ['-c', 'command -v podman'], { encoding: 'utf8' });
  if (which.status !== 0)
    throw new Error('podman is not installed: the container provider tests need a real engine (apt-get install -y podman runc; see .ci/run)');
  const dir = mkdtempSync(join(tmpdir(), 'runyard-podman-'));
  const conf = join(dir, 'containers.conf');
  // crun fails on this kernel's cgroup setup; runc works (ENVIRONMENT.md).
  writeFileSync(conf, '[engine]\nruntime = "runc"\n');
  const env: NodeJS.ProcessEnv = { ...process.env, CONTAINERS_CONF: conf };
  const cli = (...args: string[]) => {
    const r = spawnSync('podman', args, { env, encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.status !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout || r.error?.message || '').trim()}`);
    return r.stdout;
  };
  try {
    cli('info', '--format', '{{.Host.OCIRuntime.Name}}');
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`podman is installed but does not work here: ${(err as Error).message}`);
  }

  const socket = join(tmpdir(), `runyard-podman-${process.pid}.sock`);
  let service: PodmanService | undefined;
  try {
    service = await startService(socket, env);
    const t0 = Date.now();
    const { image, built } = buildRunnerImage(cli);
    return {
      host: `unix://${socket}`,
      socket,
      image,
      imageBuildMs: built ? Date.now() - t0 : 0,
      env,
      cli,
      close: async () => {
        await service!.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await service?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface PodmanService {
  stop: () => Promise<void>;
}

/** `podman system service` on a unix socket; resolves once it answers /_ping. */
export async function startService(socket: string, env: NodeJS.ProcessEnv): Promise<PodmanService> {
  rmSync(socket, { force: true });
  const service: ChildProcess = spawn('podman', ['system', 'service', '--time=0', `unix://${socket}`], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  service.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const exited = new Promise<void>((ok) => service.once('exit', () => ok()));
  const stop = async () => {
    if (service.exitCode === null && service.signalCode === null) {
      service.kill('SIGTERM');
      const t = setTimeout(() => service.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(socket, { force: true });
  };
  try {
    const deadline = Date.now() + 30_000;
    while (!(await ping(socket))) {
      if (service.exitCode !== null) throw new Error(`podman system service exited (${service.exitCode}): ${stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`podman API service did not answer on ${socket} within 30s: ${stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop };
}

/** GET /_ping on the socket: true once the service answers. */
export function ping(socket: string): Promise<boolean> {
  return new Promise((ok) => {
    const req = request({ socketPath: socket, path: '/_ping', timeout: 2_000 }, (res) => {
      res.resume();
      ok(res.statusCode === 200);
    });
    req.on('error', () => ok(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

function hashTree(h: ReturnType<typeof createHash>, path: string) {
  const st = statSync(path);
  if (st.isDirectory()) for (const e of readdirSync(path).sort()) hashTree(h, join(path, e));
  else {
    h.update(path + '\0');
    h.update(readFileSync(path));
  }
}

/** Imports a root filesystem folder as an image; `changes` are Containerfile instructions. */
function importRootfs(cli: (...args: string[]) => string, rootfs: string, image: string, changes: string[]) {
  const tar = `${rootfs}.tar`;
  const t = spawnSync('tar', ['-C', rootfs, '-cf', tar, '.']);
  if (t.status !== 0) throw new Error(`tar failed: ${t.stderr}`);
  cli('import', ...changes.flatMap((c) => ['--change', c]), tar, image);
}

/** dash as /bin/sh (and `tools`) with their libraries, /tmp, /etc/passwd: the least a job's shell needs. */
function shellRootfs(rootfs: string, tools: string[] = []) {
  const copyKeep = (file: string) => {
    const real = spawnSync('readlink', ['-f', file], { encoding: 'utf8' }).stdout.trim() || file;
    for (const p of new Set([file, real])) {
      const to = join(rootfs, p);
      mkdirSync(dirname(to), { recursive: true });
      if (!existsSync(to)) copyFileSync(real, to);
    }
  };
  for (const bin of ['/usr/bin/dash', ...tools]) {
    copyKeep(bin);
    const { libs, loader } = sharedLibraries(bin);
    for (const lib of [...libs, loader]) copyKeep(lib);
  }
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  symlinkSync('/usr/bin/dash', join(rootfs, 'bin/sh'));
  for (const d of ['tmp', 'var/tmp']) {
    mkdirSync(join(rootfs, d), { recursive: true });
    chmodSync(join(rootfs, d), 0o1777);
  }
  for (const d of ['proc', 'sys', 'dev', 'etc', 'root']) mkdirSync(join(rootfs, d), { recursive: true });
  writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\n');
}

/**
 * Runs `fn` holding a lock file named after `key` in the temp dir, so that test files running at
 * the same time build an image once, not once each. A lock whose holder died is taken over.
 */
function withLock<T>(key: string, fn: () => T): T {
  const lock = join(tmpdir(), `runyard-test-lock-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`);
  const deadline = Date.now() + 10 * 60_000;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let holder = 0;
      let age = 0;
      try {
        holder = Number(readFileSync(lock, 'utf8')) || 0;
        age = Date.now() - statSync(lock).mtimeMs;
      } catch {
        continue; // released meanwhile
      }
      let alive = false;
      try {
        alive = holder > 0 && process.kill(holder, 0);
      } catch {
        // no such process: the holder died
      }
      // an empty file is a holder that has not written its pid yet (or died doing so)
      if (holder ? !alive : age > 10_000) rmSync(lock, { force: true });
      else if (Date.now() > deadline) throw new Error(`waited 10 min for ${lock} (held by pid ${holder})`);
      else Atomics.wait(nap, 0, 0, 100);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Builds `repo:<tag>` with `fill(rootfs)` unless podman has it; tags of `repo` older than a day are removed. */
function cachedImage(cli: (...args: string[]) => string, repo: string, tag: string, changes: string[], fill: (rootfs: string) => void): { image: string; built: boolean } {
  const image = `${repo}:${tag}`;
  const present = () => cli('images', '--format', '{{.Repository}}:{{.Tag}}', repo).split('\n').map((l) => l.trim()).includes(image);
  if (present()) return { image, built: false };
  return withLock(image, () => (present() ? { image, built: false } : buildImage(cli, repo, image, changes, fill)));
}

function buildImage(cli: (...args: string[]) => string, repo: string, image: string, changes: string[], fill: (rootfs: string) => void): { image: string; built: boolean } {
  const work = mkdtempSync(join(tmpdir(), 'runyard-image-'));
  try {
    const rootfs = join(work, 'rootfs');
    mkdirSync(rootfs);
    fill(rootfs);
    importRootfs(cli, rootfs, image, changes);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  // Other worktrees on this machine may be testing another dist with their own tag right now:
  // only tags older than a day go, and never one a container still uses (no -f).
  const stale = cli('images', '--format', '{{.Repository}}:{{.Tag}}', '--filter', `reference=${repo}`, '--filter', 'until=24h').split('\n').map((l) => l.trim()).filter(Boolean);
  for (const old of stale) if (old !== image) try { cli('rmi', old); } catch { /* in use: left for later */ }
  return { image, built: true };
}

/**
 * The runner image: the self-contained agent bundle in /opt/runyard (scripts/bundle-agent.mjs,
 * as the Containerfile makes it) on a root filesystem with only a shell. Tagged by a hash of
 * what goes in, so it is built once per change of dist or dependencies.
 */
export function buildRunnerImage(cli: (...args: string[]) => string): { image: string; built: boolean } {
  if (!existsSync(join(ROOT, 'dist', 'bin', 'cli.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  const h = createHash('sha256');
  for (const p of ['bin', 'dist', 'package.json', 'package-lock.json', 'scripts/bundle-agent.mjs']) hashTree(h, join(ROOT, p));
  h.update(process.execPath + process.version);
  return cachedImage(cli, TEST_IMAGE_REPO, h.digest('hex').slice(0, 16), ['WORKDIR /', 'ENV PATH=/usr/local/bin:/usr/bin:/bin', `ENTRYPOINT ${JSON.stringify(AGENT_ENTRYPOINT)}`], (rootfs) => {
    shellRootfs(rootfs, ['/usr/bin/sleep', '/usr/bin/cat']);
    for (const d of ['work', 'var/lib/runyard/state']) mkdirSync(join(rootfs, d), { recursive: true });
    bundleAgent(join(rootfs, AGENT_DIR), { root: ROOT });
  });
}

/**
 * A base image for dynamic-image jobs, like one a user would name: a shell, no Node, no agent,
 * and a marker file (/etc/runyard-test-base holding `variant`) that proves a job ran on it.
 */
export function buildBaseImage(cli: (...args: string[]) => string, variant: string): string {
  return cachedImage(cli, `${BASE_IMAGE_REPO}-${variant}`, '1', ['ENV PATH=/usr/local/bin:/usr/bin:/bin', 'CMD ["/bin/sh"]'], (rootfs) => {
    shellRootfs(rootfs);
    writeFileSync(join(rootfs, 'etc/runyard-test-base'), `${variant}\n`);
  }).image;
}
