import { createHash } from 'node:crypto';
import type { RegisterTaskDefinitionCommandInput } from '@aws-sdk/client-ecs';
import type { ClassSize, PoolConfig } from '../../config/schema.js';
import { taskSize, usesFargate, type EcsPoolFields } from './pool-config.js';
import { launchedAgentPassEnv } from '../../lib/base-env.js';

export const TAG_INSTANCE = 'runyard.instance';
export const TAG_POOL = 'runyard.pool';
export const TAG_RUNNER = 'runyard.runner';
export const TAG_CONFIG_HASH = 'runyard.config-hash';
/** Only in service mode, where no overrides exist: the runner's launch token (see README). */
export const TAG_LAUNCH_TOKEN = 'runyard.launch-token';

/** Where the agent keeps its identity and job dirs inside the task. */
export const TASK_STATE_DIR = '/var/lib/runyard/state';
export const TASK_WORK_DIR = '/work';

/** The pool's `ecs:` block, with its defaults when the pool has none (config load refuses that). */
export function ecsFields(pool: PoolConfig): EcsPoolFields {
  if (!pool.ecs) throw new Error(`pool ${pool.name} has no ecs block: the ecs provider needs one (cluster, subnets, …)`);
  return pool.ecs;
}

/**
 * The task definition runyard registers for a pool: one container running the agent of the
 * pool's image, the class size as task cpu/memory, the pool's env, and the agent's static env.
 * What differs per runner (id, launch token, server URL) goes in the RunTask overrides.
 */
export function taskDefinitionFor(pool: PoolConfig, classSize: ClassSize | undefined, instanceId: string, extraEnv: Record<string, string> = {}): { input: RegisterTaskDefinitionCommandInput; hash: string } {
  const e = ecsFields(pool);
  const fargate = usesFargate(e);
  const size = taskSize(classSize);
  // jobs see an allowlist of the agent's env, plus what ECS gives the task (base-env.ts)
  const passEnv = launchedAgentPassEnv('ecs-task');
  const environment = Object.entries({ ...passEnv, ...pool.env, ...extraEnv, RUNYARD_STATE_DIR: TASK_STATE_DIR, RUNYARD_WORK_DIR: TASK_WORK_DIR, RUNYARD_INSTANCE_ID: instanceId })
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([name, value]) => ({ name, value }));
  const input: RegisterTaskDefinitionCommandInput = {
    family: `runyard-${pool.name}`,
    requiresCompatibilities: [fargate ? 'FARGATE' : 'EC2'],
    networkMode: fargate || e.subnets.length ? 'awsvpc' : 'host',
    cpu: String(size.cpu),
    memory: String(size.memory),
    ...(e.executionRoleArn ? { executionRoleArn: e.executionRoleArn } : {}),
    ...(e.taskRoleArn ? { taskRoleArn: e.taskRoleArn } : {}),
    containerDefinitions: [
      {
        name: e.containerName,
        image: pool.image!,
        essential: true,
        environment,
        // the agent drains on SIGTERM; ECS kills after this (Fargate's maximum is 120 s)
        stopTimeout: 30,
        ulimits: [{ name: 'nofile', softLimit: 20000, hardLimit: 20000 }],
        ...(e.logs
          ? { logConfiguration: { logDriver: 'awslogs', options: { 'awslogs-group': e.logs.group, 'awslogs-region': e.logs.region ?? e.region ?? 'us-east-1', 'awslogs-stream-prefix': e.logs.streamPrefix } } }
          : {}),
      },
    ],
  };
  const hash = createHash('sha256').update(JSON.stringify(input)).digest('hex').slice(0, 16);
  input.tags = [
    { key: TAG_CONFIG_HASH, value: hash },
    { key: TAG_INSTANCE, value: instanceId },
    { key: TAG_POOL, value: pool.name },
  ];
  return { input, hash };
}
