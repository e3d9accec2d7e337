import type { Pool } from '../store/queries/pools.js';
import { baseAllowed } from '../app/images.js';

/**
 * Picks the pool for a GitHub job's `runs-on` labels. `self-hosted` is implied; `class:<size>`
 * must equal the pool's `class`; `image:<base>` must be the pool's `image` or a base its
 * `dynamicImages` allow (then the job runs on that base: `image` is returned); every other label
 * must be in the pool's `labels` (case-insensitive). Only pools that declare labels serve GitHub.
 * Among matches a pool whose own image is the base wins, then the most specific pool (fewest labels
 * beyond the job's), then the name.
 */
export function routeLabels(pools: Pool[], jobLabels: string[]): { pool: Pool; image?: string } | undefined {
  let cls: string | undefined;
  let image: string | undefined;
  const plain: string[] = [];
  for (const raw of jobLabels) {
    const l = raw.trim();
    const lower = l.toLowerCase();
    if (lower === 'self-hosted') continue;
    if (lower.startsWith('class:')) cls = l.slice(6);
    else if (lower.startsWith('image:')) image = l.slice(6);
    else plain.push(lower);
  }
  const matches = pools.filter((p) => {
    const have = new Set(p.config.labels.map((l) => l.toLowerCase()));
    if (have.size === 0) return false;
    if (cls !== undefined && p.config.class !== cls) return false;
    if (image !== undefined && p.config.image !== image && !(p.config.provider === 'container' && baseAllowed(p.config.dynamicImages, image))) return false;
    return plain.every((l) => have.has(l));
  });
  const own = (p: Pool) => (image === undefined || p.config.image === image ? 0 : 1);
  matches.sort((a, b) => own(a) - own(b) || a.config.labels.length - b.config.labels.length || a.name.localeCompare(b.name));
  const pool = matches[0];
  if (!pool) return undefined;
  return own(pool) ? { pool, image } : { pool };
}

export const isSelfHosted = (labels: string[]) => labels.some((l) => l.toLowerCase() === 'self-hosted');
