import { z } from 'zod';
import { parseDuration } from '../lib/duration.js';
import { kubernetesPoolFields } from '../providers/kubernetes/pool-config.js';
import { ecsPoolFields } from '../providers/ecs/pool-config.js';
import { ec2PoolFields, ec2PoolIssues } from '../providers/ec2/pool-config.js';

/** A duration as "30s", "5m", "1h" or milliseconds; parsed to milliseconds. */
export const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(v)}: use 30s, 5m, 1h or milliseconds` });
    return z.NEVER;
  }
  return ms;
});

export const slug = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a slug: 1-63 lowercase letters, digits and dashes');

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name');

export const poolSchema = z
  .strictObject({
    name: slug,
    provider: z.enum(['process', 'container', 'kubernetes', 'ecs', 'ec2']).default('process'),
    image: z.string().min(1).max(512).optional(),
    class: slug.optional(),
    labels: z.array(z.string().min(1).max(128)).max(64).default([]),
    maxJobsPerRunner: z.number().int().min(1).max(256).default(1),
    minIdle: z.number().int().min(0).max(1000).default(0),
    maxRunners: z.number().int().min(0).max(10000).default(10),
    idleTimeout: duration.default(300_000),
    maxLifetime: duration.default(86_400_000),
    ephemeral: z.boolean().default(false),
    jobTimeout: duration.default(3_600_000),
    startTimeout: duration.default(60_000),
    distribution: z.string().min(1).max(200).optional(),
    setup: z.array(z.string().min(1).max(10_000)).max(100).default([]),
    env: z.record(envName, z.string().max(65_536)).default({}),
    /** Jobs may name their own base image: false, true (any), or the allowed bases (`*` globs). */
    dynamicImages: z
      .union([z.boolean(), z.array(z.string().regex(/^[a-zA-Z0-9._\/:@*-]{1,256}$/, 'must be an image reference, `*` matching any characters')).min(1).max(100)])
      .default(false),
    /** Provider-specific fields, one block per cloud provider (see src/providers/<name>/pool-config.ts). */
    kubernetes: kubernetesPoolFields.optional(),
    ecs: ecsPoolFields.optional(),
    ec2: ec2PoolFields.optional(),
  })
  .superRefine((p, ctx) => {
    if (p.minIdle > p.maxRunners) ctx.addIssue({ code: 'custom', path: ['minIdle'], message: `minIdle (${p.minIdle}) exceeds maxRunners (${p.maxRunners})` });
    for (const block of ['kubernetes', 'ecs', 'ec2'] as const)
      if (p[block] !== undefined && p.provider !== block)
        ctx.addIssue({ code: 'custom', path: [block], message: `a ${block} block needs provider ${block}, not ${p.provider}` });
    if ((p.provider === 'container' || p.provider === 'kubernetes' || p.provider === 'ecs') && !p.image)
      ctx.addIssue({ code: 'custom', path: ['image'], message: `provider ${p.provider} needs an image` });
    for (const issue of ec2PoolIssues(p)) ctx.addIssue({ code: 'custom', ...issue });
    if (p.dynamicImages !== false && p.provider !== 'container' && p.provider !== 'kubernetes')
      ctx.addIssue({ code: 'custom', path: ['dynamicImages'], message: `dynamic images need the container or kubernetes provider, not ${p.provider}` });
  });
export type PoolInput = z.input<typeof poolSchema>;
export type PoolConfig = z.output<typeof poolSchema>;

export const classSizeSchema = z.strictObject({
  cpu: z.number().positive().max(1024),
  memoryMb: z.number().int().positive().max(4_194_304),
});
export type ClassSize = z.output<typeof classSizeSchema>;

export const DEFAULT_CLASS_SIZES: Record<string, ClassSize> = {
  small: { cpu: 0.5, memoryMb: 1024 },
  medium: { cpu: 1, memoryMb: 2048 },
  large: { cpu: 2, memoryMb: 4096 },
};

export const configSchema = z
  .strictObject({
    port: z.number().int().min(0).max(65535).default(8080),
    host: z.string().min(1).default('127.0.0.1'),
    /** The URL runners use to reach this server; defaults to http://127.0.0.1:<port>. */
    publicUrl: z.url().optional(),
    dataDir: z.string().min(1).default('.runyard'),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    /** Sets the admin token instead of generating one (automation). */
    adminToken: z.string().min(16, 'must be at least 16 characters').optional(),
    /** Key that encrypts job secrets at rest; generated into the data dir when omitted. */
    secretKey: z.string().min(16, 'must be at least 16 characters').optional(),
    store: z.strictObject({ url: z.string().min(1).optional() }).prefault({}),
    classSizes: z.record(slug, classSizeSchema).default(DEFAULT_CLASS_SIZES),
    github: z
      .strictObject({
        webhookSecret: z.string().min(1).optional(),
        appId: z.union([z.string(), z.number()]).optional(),
        privateKeyPath: z.string().optional(),
        token: z.string().optional(),
        apiUrl: z.url().default('https://api.github.com'),
        runnerPath: z.string().min(1).default('./actions-runner/run.sh'),
        runnerVersion: z.string().min(1).optional(),
        scope: z.enum(['repo', 'org']).default('repo'),
        runnerGroupId: z.number().int().min(1).default(1),
        runnerPrefix: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, _ and -, up to 32').default('runyard'),
        assignTimeout: duration.default(300_000),
        reconcileInterval: duration.default(60_000),
        repositories: z.array(z.string().regex(/^[\w.-]+\/[\w.-]+$/, 'must be owner/name')).default([]),
        maxRateLimitWait: duration.default(60_000),
      })
      .optional(),
    scheduler: z
      .strictObject({
        tick: duration.default(10_000),
        offlineAfter: duration.default(60_000),
        stuckAfter: duration.default(300_000),
        /** how long a runner asked to stop may finish its jobs before it is killed */
        stopGrace: duration.default(30_000),
      })
      .prefault({}),
    runner: z
      .strictObject({
        heartbeatInterval: duration.default(30_000),
        pingInterval: duration.default(10_000),
      })
      .prefault({}),
    limits: z
      .strictObject({
        maxBodyBytes: z.number().int().positive().default(1_048_576),
        maxArtifactBytes: z.number().int().positive().default(268_435_456),
        maxBatch: z.number().int().positive().max(10_000).default(1000),
      })
      .prefault({}),
    pools: z.array(poolSchema).prefault([{ name: 'local', provider: 'process', maxJobsPerRunner: 2, maxRunners: 4 }]),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.pools.forEach((p, i) => {
      if (seen.has(p.name)) ctx.addIssue({ code: 'custom', path: ['pools', i, 'name'], message: `duplicate pool name ${p.name}` });
      seen.add(p.name);
      if (p.class && !c.classSizes[p.class])
        ctx.addIssue({ code: 'custom', path: ['pools', i, 'class'], message: `unknown class size ${p.class}; known: ${Object.keys(c.classSizes).join(', ')}` });
    });
  });
export type Config = z.output<typeof configSchema>;
