import { z } from 'zod';
import { duration as durationRule, envMap, githubRepo, labels, safeString, slug } from '../lib/validation.js';
import { kubernetesPoolFields } from '../providers/kubernetes/pool-config.js';
import { ecsPoolFields, fargateSizeProblem, taskSize, usesFargate } from '../providers/ecs/pool-config.js';
import { ec2PoolFields, ec2PoolIssues } from '../providers/ec2/pool-config.js';
import { leaseProblems } from './lease.js';
import { minIdleScheduleSchema, scheduleIssues } from './min-idle-schedule.js';

/** A duration as "30s", "5m", "1h" or milliseconds; parsed to milliseconds, at most the timer ceiling. */
export const duration = durationRule();
/** The same, refusing 0. */
const positiveDuration = durationRule({ positive: true });

export { slug };

export const poolSchema = z
  .strictObject({
    name: slug,
    provider: z.enum(['process', 'container', 'kubernetes', 'ecs', 'ec2']).default('process'),
    image: safeString({ min: 1, max: 512 }).optional(),
    class: slug.optional(),
    labels: labels.default([]),
    maxJobsPerRunner: z.number().int().min(1).max(256).default(1),
    minIdle: z.number().int().min(0).max(1000).default(0),
    /** minIdle by day and time in a time zone (src/config/min-idle-schedule.ts); minIdle outside its windows */
    minIdleSchedule: minIdleScheduleSchema.optional(),
    maxRunners: z.number().int().min(0).max(10000).default(10),
    idleTimeout: duration.default(300_000),
    maxLifetime: positiveDuration.default(86_400_000),
    ephemeral: z.boolean().default(false),
    // 0 would time every job (or runner start) out at once, as for a job's own timeout
    jobTimeout: positiveDuration.default(3_600_000),
    startTimeout: positiveDuration.default(60_000),
    distribution: safeString({ min: 1, max: 200 }).optional(),
    setup: z.array(safeString({ min: 1, max: 10_000 })).max(100).default([]),
    env: envMap.default({}),
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
    for (const issue of scheduleIssues(p.minIdleSchedule, p.maxRunners)) ctx.addIssue({ code: 'custom', ...issue });
    for (const block of ['kubernetes', 'ecs', 'ec2'] as const)
      if (p[block] !== undefined && p.provider !== block)
        ctx.addIssue({ code: 'custom', path: [block], message: `a ${block} block needs provider ${block}, not ${p.provider}` });
    if ((p.provider === 'container' || p.provider === 'kubernetes' || p.provider === 'ecs') && !p.image)
      ctx.addIssue({ code: 'custom', path: ['image'], message: `provider ${p.provider} needs an image` });
    if (p.provider === 'ecs' && !p.ecs) ctx.addIssue({ code: 'custom', path: ['ecs'], message: 'provider ecs needs an ecs block (cluster, subnets, …)' });
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
    host: safeString({ min: 1, max: 255 }).default('127.0.0.1'),
    /** The URL runners use to reach this server; defaults to http://127.0.0.1:<port>. */
    publicUrl: z.url().optional(),
    dataDir: safeString({ min: 1, max: 4096 }).default('.runyard'),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    /** Sets the admin token instead of generating one (automation). */
    adminToken: safeString({ min: 16, max: 512 }).optional(),
    /** Key that encrypts job secrets at rest; generated into the data dir when omitted. */
    secretKey: safeString({ min: 16, max: 512 }).optional(),
    store: z.strictObject({ url: safeString({ min: 1, max: 4096 }).optional() }).prefault({}),
    classSizes: z.record(slug, classSizeSchema).default(DEFAULT_CLASS_SIZES),
    github: z
      .strictObject({
        webhookSecret: safeString({ min: 1, max: 1024 }).optional(),
        appId: z.union([safeString({ min: 1, max: 64 }), z.number().int().positive()]).optional(),
        privateKeyPath: safeString({ min: 1, max: 4096 }).optional(),
        token: safeString({ min: 1, max: 1024 }).optional(),
        apiUrl: z.url().default('https://api.github.com'),
        runnerPath: safeString({ min: 1, max: 4096 }).default('./actions-runner/run.sh'),
        runnerVersion: safeString({ min: 1, max: 64 }).optional(),
        scope: z.enum(['repo', 'org']).default('repo'),
        runnerGroupId: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).default(1),
        runnerPrefix: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, _ and -, up to 32').default('runyard'),
        assignTimeout: duration.default(300_000),
        reconcileInterval: positiveDuration.default(60_000),
        repositories: z.array(githubRepo).max(1000).default([]),
        maxRateLimitWait: duration.default(60_000),
      })
      .optional(),
    scheduler: z
      .strictObject({
        tick: positiveDuration.default(10_000),
        offlineAfter: positiveDuration.default(60_000),
        stuckAfter: positiveDuration.default(300_000),
        /** how long a runner asked to stop may finish its jobs before it is killed */
        stopGrace: duration.default(30_000),
      })
      .prefault({}),
    runner: z
      .strictObject({
        heartbeatInterval: positiveDuration.default(30_000),
        pingInterval: positiveDuration.default(10_000),
        /** How long a runner's hold on its jobs lasts without a heartbeat (see config/lease.ts). */
        lease: positiveDuration.optional(),
      })
      .prefault({}),
    limits: z
      .strictObject({
        maxBodyBytes: z.number().int().positive().max(1 << 30).default(1_048_576),
        maxArtifactBytes: z.number().int().positive().max(2 ** 40).default(268_435_456),
        maxBatch: z.number().int().positive().max(10_000).default(1000),
      })
      .prefault({}),
    pools: z.array(poolSchema).prefault([{ name: 'local', provider: 'process', maxJobsPerRunner: 2, maxRunners: 4 }]),
  })
  .superRefine((c, ctx) => {
    for (const p of leaseProblems(c)) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
    const seen = new Set<string>();
    c.pools.forEach((p, i) => {
      if (seen.has(p.name)) ctx.addIssue({ code: 'custom', path: ['pools', i, 'name'], message: `duplicate pool name ${p.name}` });
      seen.add(p.name);
      if (p.class && !c.classSizes[p.class])
        ctx.addIssue({ code: 'custom', path: ['pools', i, 'class'], message: `unknown class size ${p.class}; known: ${Object.keys(c.classSizes).join(', ')}` });
      // Fargate runs only its own cpu/memory pairs: say so at load, not at the first RunTask.
      const fargate = p.provider === 'ecs' && !p.ecs?.taskDefinition && usesFargate(p.ecs ?? {}) ? fargateSizeProblem(taskSize(p.class ? c.classSizes[p.class] : undefined)) : undefined;
      if (fargate && (!p.class || c.classSizes[p.class])) ctx.addIssue({ code: 'custom', path: ['pools', i, 'class'], message: `class ${p.class ?? '(default 0.5 vCPU, 1024 MiB)'}: ${fargate}` });
    });
  });
export type Config = z.output<typeof configSchema>;
