/*
 * Dynamic images: a job names a base image (`image: debian:12`, or the GitHub label
 * `image:debian:12`) and runs on a runner built from that base with the agent layered in. The
 * agent comes from the pool's own runner image, where scripts/bundle-agent.mjs put it as a
 * self-contained folder (Node, its libraries and loader, runyard), so it runs on any base of the
 * same architecture without touching the base's own files.
 */
import { createHash } from 'node:crypto';
import type { PoolConfig } from '../../config/schema.js';
import { UnprocessableError } from '../../lib/errors.js';

/** Where the agent bundle lives in a runner image. */
export const AGENT_DIR = '/opt/runyard';
/** How a runner image starts the agent: through the bundle's own loader, so the base's libc does not matter. */
export const AGENT_ENTRYPOINT = [`${AGENT_DIR}/node/lib/ld.so`, '--library-path', `${AGENT_DIR}/node/lib`, `${AGENT_DIR}/node/bin/node`, `${AGENT_DIR}/app/bin/runyard.js`, 'agent'];

/** Images built for dynamic jobs are tagged `<repo>:<key>`; the key is a digest of base and agent. */
export const DYNAMIC_IMAGE_REPO = 'localhost/runyard-dynamic';

/**
 * An image reference: [registry/]path[:tag][@sha256:digest]. As engines read it, the first
 * component is a registry only when it has a dot or a port or is localhost; path components are
 * lowercase.
 */
const REGISTRY = String.raw`(?:(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+)(?::[0-9]+)?|[a-zA-Z0-9-]+:[0-9]+)\/`;
const COMPONENT = String.raw`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`;
export const IMAGE_REF = new RegExp(String.raw`^(?:${REGISTRY})?${COMPONENT}(?:\/${COMPONENT})*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$`);

/** A pool's `dynamicImages` as stored (pools applied before the field existed have none). */
type DynamicSetting = PoolConfig['dynamicImages'] | undefined;

/** Whether `base` matches one of the allowed patterns (`*` matches any run of characters). */
export function baseAllowed(setting: DynamicSetting, base: string): boolean {
  if (setting === true) return true;
  if (!Array.isArray(setting)) return false;
  return setting.some((pattern) => new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*')}$`).test(base));
}

/**
 * The image a job runs on, as stored: null for the pool's own image, else the base it asked for.
 * Throws a 422 naming `field` when the pool cannot run that image.
 */
export function resolveJobImage(pool: PoolConfig, requested: string | undefined | null, field = 'image'): string | null {
  if (requested === undefined || requested === null || requested === pool.image) return null;
  if (!IMAGE_REF.test(requested)) throw new UnprocessableError(`image ${JSON.stringify(requested)} is not an image reference like debian:12 or registry.example/ci/node:20`, field);
  if (pool.provider !== 'container' && pool.provider !== 'kubernetes')
    throw new UnprocessableError(`pool ${pool.name} runs ${pool.provider} runners, which cannot take a job's own image; use a kubernetes or container pool with dynamicImages`, field);
  const setting = pool.dynamicImages as DynamicSetting;
  if (!setting) throw new UnprocessableError(`pool ${pool.name} does not allow dynamic images (set dynamicImages: true, or a list of allowed bases)`, field);
  if (!baseAllowed(setting, requested))
    throw new UnprocessableError(`image ${requested} is not among pool ${pool.name}'s allowed bases: ${(setting as string[]).join(', ')}`, field);
  return requested;
}

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
