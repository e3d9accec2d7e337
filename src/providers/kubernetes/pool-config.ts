import { z } from 'zod';

/**
 * The `kubernetes:` block of a pool with `provider: kubernetes`: what only this provider needs. Validated at
 * config load and pool apply; covered by the pool's config hash.
 */
export const kubernetesPoolFields = z.strictObject({});
export type KubernetesPoolFields = z.output<typeof kubernetesPoolFields>;
