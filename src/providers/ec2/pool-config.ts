import { z } from 'zod';
import { parseDuration } from '../../lib/duration.js';

// Defined here rather than imported from config/schema.ts, which imports this file.
const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(v)}: use 30s, 5m, 1h or milliseconds` });
    return z.NEVER;
  }
  return ms;
});
const instanceType = z.string().regex(/^[a-z0-9-]+\.[a-z0-9-]+$/, 'must be an instance type such as t3.micro');
const classKey = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a class size name');

/**
 * The `ec2:` block of a pool with `provider: ec2`: what only this provider needs. Validated at
 * config load and pool apply; covered by the pool's config hash.
 */
export const ec2PoolFields = z
  .strictObject({
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'must be an AWS region such as us-east-1'),
    /** Another EC2 endpoint (a VPC endpoint, or a test double on loopback). */
    endpoint: z.url().optional(),
    /** The launch template instances start from; `imageId` and the instance type override it. */
    launchTemplate: z
      .strictObject({
        id: z.string().regex(/^lt-[0-9a-f]{8,17}$/, 'must be a launch template id such as lt-0123456789abcdef0').optional(),
        name: z.string().min(3).max(128).optional(),
        version: z.string().min(1).max(32).optional(),
      })
      .refine((t) => (t.id === undefined) !== (t.name === undefined), 'give the launch template by id or by name, not both')
      .optional(),
    /** The AMI: it carries the agent bundle (see README "Run runners on EC2"). */
    imageId: z.string().regex(/^ami-[0-9a-f]{8,17}$/, 'must be an AMI id such as ami-0123456789abcdef0').optional(),
    /** The instance type when the pool has no class, or its class is not in `instanceTypes`. */
    instanceType: instanceType.optional(),
    /** Class size → instance types, tried in order when one has no capacity. */
    instanceTypes: z.record(classKey, z.array(instanceType).min(1).max(20)).default({}),
    /** Subnets, tried in order when one has no capacity. Empty: the account's default subnet. */
    subnets: z.array(z.string().regex(/^subnet-[0-9a-f]{8,17}$/, 'must be a subnet id such as subnet-0123456789abcdef0')).max(16).default([]),
    securityGroups: z.array(z.string().regex(/^sg-[0-9a-f]{8,17}$/, 'must be a security group id such as sg-0123456789abcdef0')).max(5).default([]),
    /** An instance profile, by name or ARN. */
    iamInstanceProfile: z.string().min(1).max(2048).optional(),
    /** One-time spot instances (interruptions are lost runners; they cannot be kept stopped). */
    spot: z.boolean().default(false),
    warmPool: z
      .strictObject({
        /** Released instances kept stopped for reuse instead of terminated. */
        stopped: z.number().int().min(0).max(1000).default(0),
        /** Instances kept running with an idle runner: raises the pool's minIdle to this. */
        running: z.number().int().min(0).max(1000).default(0),
      })
      .prefault({}),
    /** Where the AMI carries the agent bundle. */
    agentDir: z.string().regex(/^\/[A-Za-z0-9._\/-]*$/, 'must be an absolute path').default('/opt/runyard'),
    /** How often instances are described (state changes, spot interruptions, status checks). */
    pollInterval: duration.default(15_000),
  })
  .superRefine((e, ctx) => {
    if (!e.launchTemplate && !e.imageId) ctx.addIssue({ code: 'custom', path: ['imageId'], message: 'an ec2 pool needs imageId or launchTemplate' });
    if (e.spot && e.warmPool.stopped > 0)
      ctx.addIssue({ code: 'custom', path: ['warmPool', 'stopped'], message: 'a one-time spot instance cannot be stopped: set warmPool.stopped to 0 or spot to false' });
  });
export type Ec2PoolFields = z.output<typeof ec2PoolFields>;

/** Checks that need the whole pool: an ec2 pool needs its block, and a way to pick an instance type. */
export function ec2PoolIssues(p: { provider: string; class?: string; ec2?: Ec2PoolFields; maxRunners: number }): { path: (string | number)[]; message: string }[] {
  if (p.provider !== 'ec2') return [];
  if (!p.ec2) return [{ path: ['ec2'], message: 'provider ec2 needs an ec2 block (region, imageId or launchTemplate, …)' }];
  const out: { path: (string | number)[]; message: string }[] = [];
  if (!p.ec2.launchTemplate && !p.ec2.instanceType && !(p.class && p.ec2.instanceTypes[p.class]))
    out.push({ path: ['ec2', 'instanceType'], message: p.class ? `no instance type for class ${p.class}: add it to ec2.instanceTypes or set ec2.instanceType` : 'an ec2 pool needs instanceType (or a launchTemplate)' });
  if (p.ec2.warmPool.running > p.maxRunners) out.push({ path: ['ec2', 'warmPool', 'running'], message: `warmPool.running (${p.ec2.warmPool.running}) exceeds maxRunners (${p.maxRunners})` });
  return out;
}

/** The instance types to try for a pool, in order (empty: the launch template's). */
export function instanceTypesFor(e: Ec2PoolFields, poolClass: string | undefined): string[] {
  if (poolClass && e.instanceTypes[poolClass]) return e.instanceTypes[poolClass]!;
  return e.instanceType ? [e.instanceType] : [];
}
