/*
 * `runyard image build`: the runner image for container pools, assembled on the local engine
 * without a registry. The agent bundle (scripts/bundle-agent.mjs: Node.js, its libraries and
 * loader, runyard) plus dash as /bin/sh and a few basic tools from this machine go into a root
 * filesystem that the engine builds `FROM scratch`, over its Docker API (podman or Docker).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { CliError } from './client.js';
import { bad } from './output.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const AGENT_DIR = '/opt/runyard';
const ENTRYPOINT = [`${AGENT_DIR}/node/lib/ld.so`, '--library-path', `${AGENT_DIR}/node/lib`, `${AGENT_DIR}/node/bin/node`, `${AGENT_DIR}/app/bin/runyard.js`, 'agent'];
/** What a job's shell commonly needs, copied from this machine when present. */
const TOOLS = ['ls', 'cat', 'sleep', 'env', 'mkdir', 'rm', 'cp', 'mv', 'ln', 'touch', 'chmod', 'grep', 'sed', 'head', 'tail', 'tr', 'wc', 'sort', 'uname', 'id', 'date', 'tar', 'gzip'];
const TAG = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?$/;

export function registerImage(program: Command): void {
  const image = program.command('image').description('the runner image for container pools');
  image
    .command('build')
    .description('build the runner image on the local container engine from this installation (no registry needed)')
    .option('-t, --tag <image>', 'image name and tag', 'runyard-runner:latest')
    .option('--engine <address>', 'Docker API of the engine: unix:///path or tcp://host:port (default: RUNYARD_CONTAINER_HOST, DOCKER_HOST, else unix:///var/run/docker.sock)')
    .addHelpText(
      'after',
      `
The image holds the agent in ${AGENT_DIR} (this Node.js, its libraries, runyard and its
dependencies), dash as /bin/sh and a few basic tools of this machine. Extend it with what your
jobs need (FROM runyard-runner:latest), keeping ${AGENT_DIR} and the ENTRYPOINT. With podman:
  podman system service --time=0 unix:///tmp/podman.sock &
  RUNYARD_CONTAINER_HOST=unix:///tmp/podman.sock runyard image build
Then use it in a pool: provider: container, image: runyard-runner:latest.`,
    )
    .action(async (opts: { tag: string; engine?: string }) => {
      if (!TAG.test(opts.tag)) throw bad(`--tag must be an image name like runyard-runner:latest, got ${JSON.stringify(opts.tag)}`);
      await buildImage(opts.tag, opts.engine ?? process.env.RUNYARD_CONTAINER_HOST ?? process.env.DOCKER_HOST);
    });
}

const say = (line: string) => process.stderr.write(`${line}\n`);

async function buildImage(tag: string, host: string | undefined): Promise<void> {
  const [{ default: Docker }, { engineAddress }] = await Promise.all([import('dockerode'), import('../providers/container/container-provider.js')]);
  let address: ReturnType<typeof engineAddress>;
  try {
    address = engineAddress(host);
  } catch (err) {
    throw bad((err as Error).message);
  }
  const docker = new Docker(address.opts);
  try {
    await docker.ping();
  } catch (err) {
    throw new CliError(
      `error: cannot reach the container engine at ${address.display} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})\n` +
        'hint: start one (podman: `podman system service --time=0 unix:///tmp/podman.sock &`) and point RUNYARD_CONTAINER_HOST or --engine at it',
    );
  }
  if (!existsSync(join(ROOT, 'dist', 'bin', 'cli.js'))) throw new CliError(`error: ${ROOT}dist is missing: run \`npm run build\` in ${ROOT} first`);

  const t0 = performance.now();
  const work = mkdtempSync(join(tmpdir(), 'runyard-image-'));
  try {
    say(`assembling the runner: the agent bundle (Node.js ${process.version}, runyard from ${ROOT}) and a shell`);
    const rootfs = join(work, 'rootfs');
    shellRootfs(rootfs);
    const bundle = (await import(new URL('../../scripts/bundle-agent.mjs', import.meta.url).href)) as { bundleAgent: (dest: string, o: { root: string }) => string };
    bundle.bundleAgent(join(rootfs, AGENT_DIR), { root: ROOT });
    say(`assembled in ${((performance.now() - t0) / 1000).toFixed(1)}s; the engine at ${address.display} builds ${tag}`);
    writeFileSync(
      join(work, 'Containerfile'),
      [
        'FROM scratch',
        'COPY rootfs/ /',
        'WORKDIR /',
        'ENV PATH=/usr/local/bin:/usr/bin:/bin RUNYARD_STATE_DIR=/var/lib/runyard/state RUNYARD_WORK_DIR=/work',
        `ENTRYPOINT ${JSON.stringify(ENTRYPOINT)}`,
        '',
      ].join('\n'),
    );
    const stream = await docker.buildImage({ context: work, src: ['Containerfile', 'rootfs'] }, { t: tag, dockerfile: 'Containerfile', rm: true, forcerm: true });
    await new Promise<void>((ok, fail) => {
      let failure: string | undefined;
      docker.modem.followProgress(
        stream,
        (err: Error | null) => (err ? fail(err) : failure ? fail(new Error(failure)) : ok()),
        (ev: { stream?: string; status?: string; error?: string; errorDetail?: { message?: string } }) => {
          if (ev.error || ev.errorDetail) failure = (ev.errorDetail?.message ?? ev.error ?? '').trim();
          for (const line of (ev.stream ?? ev.status ?? '').split('\n')) if (line.trim()) say(`  ${line.trimEnd()}`);
        },
      );
    }).catch((err) => {
      throw new CliError(`error: the engine at ${address.display} could not build ${tag}: ${(err as Error).message}`);
    });
    const id = (await docker.getImage(tag).inspect()).Id;
    say(`built ${tag} (${id.replace(/^sha256:/, '').slice(0, 12)}) in ${((performance.now() - t0) / 1000).toFixed(1)}s; use it in a pool: provider: container, image: ${tag}`);
    process.stdout.write(`${tag}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** dash as /bin/sh, the TOOLS this machine has, their libraries; /tmp, /work, the state dir, a passwd. */
function shellRootfs(rootfs: string): void {
  const copyKeep = (file: string) => {
    const real = realpathSync(file);
    for (const p of new Set([file, real])) {
      const to = join(rootfs, p);
      mkdirSync(dirname(to), { recursive: true });
      if (!existsSync(to)) copyFileSync(real, to);
    }
  };
  const bins = ['/usr/bin/dash', ...TOOLS.map((t) => `/usr/bin/${t}`).filter((b) => existsSync(b))];
  if (!existsSync(bins[0]!)) throw new CliError('error: /usr/bin/dash is missing on this machine; the image needs it as /bin/sh (apt-get install -y dash)');
  for (const bin of bins) {
    copyKeep(bin);
    for (const lib of libraries(bin)) copyKeep(lib);
  }
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  symlinkSync('/usr/bin/dash', join(rootfs, 'bin/sh'));
  for (const d of ['tmp', 'var/tmp']) {
    mkdirSync(join(rootfs, d), { recursive: true });
    chmodSync(join(rootfs, d), 0o1777);
  }
  for (const d of ['proc', 'sys', 'dev', 'etc', 'root', 'work', 'var/lib/runyard/state']) mkdirSync(join(rootfs, d), { recursive: true });
  writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\n');
}

/** Every library and the loader `ldd` names for a binary (none for a static one). */
function libraries(bin: string): string[] {
  const r = spawnSync('ldd', [bin], { encoding: 'utf8' });
  if (r.status !== 0) return [];
  return r.stdout.split('\n').flatMap((l) => l.match(/(\/\S+)/)?.[1] ?? []);
}
