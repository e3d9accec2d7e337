/*
 * A real podman engine for container-provider tests: its own Docker-compatible API service on a
 * private unix socket, runc as the runtime (through a containers.conf in a temp dir, nothing
 * global is changed), and a runner image assembled from this machine (no registry is reachable):
 * node, dash as /bin/sh, their libraries, and the runyard package with its production deps.
 *
 * When podman is missing or does not work, startPodman() throws with a message saying so: the
 * tests fail loudly instead of skipping.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, cpSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const TEST_IMAGE_REPO = 'localhost/runyard-runner-test';

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

/** The files of the runner package: bin, dist, package.json and the production dependencies. */
function packageFiles(): string[] {
  const r = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 << 20 });
  const deps = r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && l !== ROOT && l !== ROOT.replace(/\/$/, ''))
    .map((l) => relative(ROOT, l))
    .filter((l) => l.startsWith('node_modules'));
  if (deps.length === 0) throw new Error(`npm ls found no production dependencies: ${r.stderr}`);
  return ['bin', 'dist', 'package.json', 'src/store/migrations', ...deps].filter((p) => existsSync(join(ROOT, p)));
}

function hashTree(h: ReturnType<typeof createHash>, path: string) {
  const st = statSync(path);
  if (st.isDirectory()) for (const e of readdirSync(path).sort()) hashTree(h, join(path, e));
  else {
    h.update(path + '\0');
    h.update(readFileSync(path));
  }
}

/**
 * Builds localhost/runyard-runner-test:<hash of dist, bin, package.json, lockfile and node> unless
 * podman has it already; older tags of the test image are removed.
 */
export function buildRunnerImage(cli: (...args: string[]) => string): { image: string; built: boolean } {
  const node = spawnSync('readlink', ['-f', process.execPath], { encoding: 'utf8' }).stdout.trim() || process.execPath;
  const h = createHash('sha256');
  for (const p of ['bin', 'dist', 'package.json', 'package-lock.json']) hashTree(h, join(ROOT, p));
  h.update(node + process.version);
  const tag = h.digest('hex').slice(0, 16);
  const image = `${TEST_IMAGE_REPO}:${tag}`;
  if (!existsSync(join(ROOT, 'dist', 'bin', 'cli.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  const have = cli('images', '--format', '{{.Repository}}:{{.Tag}}', TEST_IMAGE_REPO).split('\n').map((l) => l.trim()).filter(Boolean);
  if (have.includes(image)) return { image, built: false };

  const work = mkdtempSync(join(tmpdir(), 'runyard-image-'));
  try {
    const rootfs = join(work, 'rootfs');
    const copyKeep = (file: string) => {
      const real = spawnSync('readlink', ['-f', file], { encoding: 'utf8' }).stdout.trim() || file;
      for (const p of new Set([file, real])) {
        const to = join(rootfs, p);
        mkdirSync(dirname(to), { recursive: true });
        if (!existsSync(to)) copyFileSync(real, to);
      }
    };
    const libs = (bin: string) =>
      spawnSync('ldd', [bin], { encoding: 'utf8' })
        .stdout.split('\n')
        .map((l) => l.match(/(\/\S+)/)?.[1])
        .filter((l): l is string => !!l);
    for (const bin of [node, '/usr/bin/dash']) {
      copyKeep(bin);
      for (const lib of libs(bin)) copyKeep(lib);
    }
    mkdirSync(join(rootfs, 'usr/local/bin'), { recursive: true });
    if (!existsSync(join(rootfs, 'usr/bin/node'))) symlinkSync(node, join(rootfs, 'usr/bin/node'));
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    symlinkSync('/usr/bin/dash', join(rootfs, 'bin/sh'));
    for (const d of ['tmp', 'var/tmp']) {
      mkdirSync(join(rootfs, d), { recursive: true });
      chmodSync(join(rootfs, d), 0o1777);
    }
    for (const d of ['proc', 'sys', 'dev', 'etc', 'work', 'var/lib/runyard/state']) mkdirSync(join(rootfs, d), { recursive: true });
    writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\n');
    mkdirSync(join(rootfs, 'root'), { recursive: true });
    const app = join(rootfs, 'opt/runyard');
    for (const p of packageFiles()) cpSync(join(ROOT, p), join(app, p), { recursive: true, dereference: true });
    const tar = join(work, 'rootfs.tar');
    const t = spawnSync('tar', ['-C', rootfs, '-cf', tar, '.']);
    if (t.status !== 0) throw new Error(`tar failed: ${t.stderr}`);
    cli(
      'import',
      '--change', 'WORKDIR /opt/runyard',
      '--change', 'ENV PATH=/usr/local/bin:/usr/bin:/bin',
      '--change', 'ENTRYPOINT ["/usr/bin/node", "/opt/runyard/bin/runyard.js", "agent"]',
      tar,
      image,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  for (const old of have) if (old !== image) try { cli('rmi', '-f', old); } catch { /* in use: left for later */ }
  return { image, built: true };
}
