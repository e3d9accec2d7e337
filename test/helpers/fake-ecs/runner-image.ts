import { buildRunnerImage, type Podman } from '../podman.js';

/**
 * The runner image under a name of the ECS tests' own. Other worktrees on this machine share the
 * podman store, and an older podman helper removes every tag of the shared runner repository but
 * its own: a second name keeps the image while these tests run. untag() drops the name again.
 * The name is this test process's own (the pid in the tag): test files run concurrently, and one
 * file's untag() must not take the name from under another's tasks.
 */
export function ecsRunnerImage(podman: Podman): { image: string; untag: () => void; ensure: () => void } {
  const image = `${podman.image.replace(/^[^:]+/, 'localhost/runyard-ecs-runner')}-p${process.pid}`;
  podman.cli('tag', podman.image, image);
  return {
    image,
    /** Builds and names it again when someone removed it meanwhile (`podman rmi -f` takes every name). */
    ensure: () => {
      try {
        podman.cli('image', 'exists', image);
      } catch {
        buildRunnerImage(podman.cli);
        podman.cli('tag', podman.image, image);
      }
    },
    untag: () => {
      try {
        podman.cli('untag', image, image);
      } catch {
        // in use or gone: harmless
      }
    },
  };
}
