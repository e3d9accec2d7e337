import { z } from 'zod';

/**
 * The `ecs:` block of a pool with `provider: ecs`: what only this provider needs. Validated at
 * config load and pool apply; covered by the pool's config hash.
 */
export const ecsPoolFields = z.strictObject({});
export type EcsPoolFields = z.output<typeof ecsPoolFields>;
