/*
 * Which image a job may run on. A job names a base image (`image: debian:12`, or the GitHub label
 * `image:debian:12`) and runs on a runner built from that base with the agent layered in (the
 * container provider builds it: src/providers/container/dynamic-images.ts); a pool allows it with
 * `dynamicImages` (true, or a list of allowed bases).
 */
import type { PoolConfig } from '../config/schema.js';
import { UnprocessableError } from '../lib/errors.js';

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
