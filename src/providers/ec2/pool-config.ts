import { z } from 'zod';

/**
 * The `ec2:` block of a pool with `provider: ec2`: what only this provider needs. Validated at
 * config load and pool apply; covered by the pool's config hash.
 */
export const ec2PoolFields = z.strictObject({});
export type Ec2PoolFields = z.output<typeof ec2PoolFields>;
