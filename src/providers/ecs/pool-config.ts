import { z } from 'zod';
import type { ClassSize } from '../../config/schema.js';

const id = (prefix: string) => z.string().regex(new RegExp(`^${prefix}-[0-9a-f]{8,17}$`), `must be an id like ${prefix}-0123abcd`);
const arn = z.string().regex(/^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$/, 'must be an ARN');

/**
 * The `ecs:` block of a pool with `provider: ecs`: what only this provider needs. Validated at
 * config load and pool apply; covered by the pool's config hash. `image` and `class` stay
 * pool-level fields: they become the task definition's image and task cpu/memory.
 */
export const ecsPoolFields = z
  .strictObject({
    cluster: z.string().min(1).max(255).default('default'),
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be an AWS region such as eu-west-1').optional(),
    /** Another ECS-compatible endpoint (tests, a proxy); default: the SDK's for the region. */
    endpoint: z.url().optional(),
    launchType: z.enum(['FARGATE', 'EC2']).optional(),
    capacityProviderStrategy: z
      .array(z.strictObject({ capacityProvider: z.string().min(1).max(255), weight: z.number().int().min(0).max(1000).default(1), base: z.number().int().min(0).max(100000).default(0) }))
      .min(1)
      .max(20)
      .optional(),
    subnets: z.array(id('subnet')).max(16).default([]),
    securityGroups: z.array(id('sg')).max(5).default([]),
    assignPublicIp: z.boolean().default(false),
    taskRoleArn: arn.optional(),
    executionRoleArn: arn.optional(),
    /** awslogs settings for the runner container (group, region, stream prefix). */
    logs: z.strictObject({ group: z.string().min(1).max(512), region: z.string().min(1).optional(), streamPrefix: z.string().min(1).max(128).default('runyard') }).optional(),
    /** An existing task definition (family, family:revision or ARN): used as it is, nothing registered. */
    taskDefinition: z.string().min(1).max(1600).optional(),
    /** The container in the task definition that runs the agent (default: `runner`). */
    containerName: z.string().regex(/^[A-Za-z0-9_-]{1,255}$/).default('runner'),
    /** `tasks`: one RunTask per runner; `service`: one ECS service per pool, scaled by desired count. */
    mode: z.enum(['tasks', 'service']).default('tasks'),
    /** The client-side launch bucket, shaped like Fargate's: a burst, then tasks per second. */
    launchBurst: z.number().int().min(1).max(10_000).default(100),
    launchRate: z.number().positive().max(10_000).default(20),
  })
  .superRefine((e, ctx) => {
    if (e.launchType && e.capacityProviderStrategy)
      ctx.addIssue({ code: 'custom', path: ['capacityProviderStrategy'], message: 'give launchType or capacityProviderStrategy, not both (ECS refuses both)' });
    if (usesFargate(e) && e.subnets.length === 0)
      ctx.addIssue({ code: 'custom', path: ['subnets'], message: 'Fargate tasks use awsvpc networking: name at least one subnet' });
  });
export type EcsPoolFields = z.output<typeof ecsPoolFields>;

/** Fargate unless an EC2 launch type or a non-Fargate capacity provider is named. */
export function usesFargate(e: Pick<EcsPoolFields, 'launchType' | 'capacityProviderStrategy'>): boolean {
  if (e.capacityProviderStrategy) return e.capacityProviderStrategy.every((s) => s.capacityProvider.startsWith('FARGATE'));
  return e.launchType !== 'EC2';
}

/** Fargate's task sizes: cpu units → allowed memory in MiB (AWS's published table). */
const FARGATE_SIZES: [cpu: number, memory: number[]][] = [
  [256, [512, 1024, 2048]],
  [512, range(1024, 4096, 1024)],
  [1024, range(2048, 8192, 1024)],
  [2048, range(4096, 16384, 1024)],
  [4096, range(8192, 30720, 1024)],
  [8192, range(16384, 61440, 4096)],
  [16384, range(32768, 122880, 8192)],
];
function range(from: number, to: number, step: number) {
  const out: number[] = [];
  for (let v = from; v <= to; v += step) out.push(v);
  return out;
}

/** A class size in ECS units: vCPU → cpu units (1024 per vCPU), MiB as they are. */
export function taskSize(size: ClassSize | undefined): { cpu: number; memory: number } {
  const s = size ?? { cpu: 0.5, memoryMb: 1024 };
  return { cpu: Math.round(s.cpu * 1024), memory: s.memoryMb };
}

/** Why a task size is not one Fargate runs, or undefined when it is. */
export function fargateSizeProblem(size: { cpu: number; memory: number }): string | undefined {
  const row = FARGATE_SIZES.find(([cpu]) => cpu === size.cpu);
  if (!row) return `Fargate has no ${size.cpu / 1024} vCPU size (cpu ${size.cpu}); allowed vCPUs: ${FARGATE_SIZES.map(([c]) => c / 1024).join(', ')}`;
  if (!row[1].includes(size.memory))
    return `Fargate runs ${size.cpu / 1024} vCPU with ${row[1][0]}-${row[1].at(-1)} MiB in steps of ${row[1][1]! - row[1][0]!}, not ${size.memory} MiB`;
  return undefined;
}
