/*
 * Dynamic images: a job names a base image (`image: debian:12`, or the GitHub label
 * `image:debian:12`) and runs on a runner built from that base with the agent layered in. The
 * agent comes from the pool's own runner image, where scripts/bundle-agent.mjs put it as a
 * self-contained folder (Node, its libraries and loader, runyard), so it runs on any base of the
 * same architecture without touching the base's own files. Which images a job may ask for is
 * decided in src/app/images.ts.
 */
import { createHash } from 'node:crypto';

/** Where the agent bundle lives in a runner image. */
export const AGENT_DIR = '/opt/runyard';
/** How a runner image starts the agent: through the bundle's own loader, so the base's libc does not matter. */
export const AGENT_ENTRYPOINT = [`${AGENT_DIR}/node/lib/ld.so`, '--library-path', `${AGENT_DIR}/node/lib`, `${AGENT_DIR}/node/bin/node`, `${AGENT_DIR}/app/bin/runyard.js`, 'agent'];

/**
 * What of the bundle the agent needs at run time, relative to AGENT_DIR: Node (binary, libraries,
 * loader), the entry scripts (app/bin), package.json (the version, the module type) and the
 * one-file agent with its code cache (app/dist/agent.*: it falls back to dist/bin only when that
 * is missing). A Kubernetes init container copies only these, not the control plane's dist/ and
 * node_modules (thousands of files).
 */
export const AGENT_RUNTIME_PATHS = ['node', 'app/bin', 'app/package.json'];
/** Files at the top of app/dist/ whose names start with this are the agent's too. */
export const AGENT_RUNTIME_DIST_PREFIX = 'agent.';

/** Images built for dynamic jobs are tagged `<repo>:<key>`; the key is a digest of base and agent. */
export const DYNAMIC_IMAGE_REPO = 'localhost/runyard-dynamic';

/** The tag of the runner image for (base, agent image), both given as image ids. */
export function dynamicImageTag(baseId: string, agentImageId: string): string {
  const key = createHash('sha256').update(`${baseId}\n${agentImageId}\n${AGENT_ENTRYPOINT.join(' ')}`).digest('hex').slice(0, 20);
  return `${DYNAMIC_IMAGE_REPO}:${key}`;
}

/**
 * The build file: the base, the agent bundle copied from the runner image, the agent as
 * entrypoint. Images are named as the user named them (engines differ on building FROM an id);
 * the labels record the ids the tag was computed from.
 */
export function dynamicImageContainerfile(base: string, baseId: string, agentImage: string, agentImageId: string): string {
  return [
    `FROM ${base}`,
    `COPY --from=${agentImage} ${AGENT_DIR} ${AGENT_DIR}`,
    `LABEL runyard.base-id=${JSON.stringify(baseId)}`,
    `LABEL runyard.base=${JSON.stringify(base)} runyard.agent-image=${JSON.stringify(agentImageId)}`,
    `ENTRYPOINT ${JSON.stringify(AGENT_ENTRYPOINT)}`,
    'CMD []',
    '',
  ].join('\n');
}
