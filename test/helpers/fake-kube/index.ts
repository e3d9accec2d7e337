/*
 * A fake Kubernetes API server whose pods run on a private podman engine, with a kubeconfig for
 * it: what a test of the kubernetes provider needs. Fails loudly when podman or kubectl is missing.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeKube, type FakeKubeOptions } from './fake-kube.js';
import type { Podman } from '../podman.js';

export { FakeKube } from './fake-kube.js';

export interface FakeCluster {
  kube: FakeKube;
  kubeconfig: string;
  /** Runs the real kubectl against the fake (asynchronously: the fake answers in this process); stdout, or throws with stderr. */
  kubectl: (...args: string[]) => Promise<string>;
  close: () => Promise<void>;
}

export async function startFakeCluster(podman: Podman, opts: Partial<FakeKubeOptions> = {}): Promise<FakeCluster> {
  const kube = await new FakeKube({ dockerHost: podman.host, ...opts }).start();
  const dir = mkdtempSync(join(tmpdir(), 'runyard-kube-'));
  const kubeconfig = kube.writeKubeconfig(join(dir, 'kubeconfig'));
  const kubectl = (...args: string[]) =>
    new Promise<string>((ok, fail) =>
      execFile('kubectl', ['--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'cache'), ...args], { encoding: 'utf8', timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') return fail(new Error('kubectl is not installed: the kubernetes tests run it against the fake API (apt-get install -y kubectl, see .ci/run)'));
        if (err) return fail(new Error(`kubectl ${args.join(' ')} failed (${err.code ?? err.signal}): ${(stderr || stdout).trim()}`));
        ok(stdout);
      }),
    );
  return {
    kube,
    kubeconfig,
    kubectl,
    close: async () => {
      await kube.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
