/*
 * The environment a launched agent's jobs start from: the allowlist, and the one rule by which
 * providers widen it (RUNYARD_PASS_ENV) for containers and pods they own whole and ECS tasks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { baseEnv, launchedAgentPassEnv } from '../src/lib/base-env.js';
import { buildPod } from '../src/providers/kubernetes/pod-spec.js';
import { taskDefinitionFor } from '../src/providers/ecs/task-definition.js';
import { configSchema } from '../src/config/schema.js';

const passed = (runtime: 'container' | 'ecs-task', env: Record<string, string>) => baseEnv(env, launchedAgentPassEnv(runtime).RUNYARD_PASS_ENV.split(','));

test('a container or pod the runner owns whole passes all of its environment to jobs', () => {
  const env = passed('container', { PATH: '/bin', JAVA_HOME: '/opt/java', POD_NAME: 'runyard-x' });
  assert.deepEqual(env, { PATH: '/bin', JAVA_HOME: '/opt/java', POD_NAME: 'runyard-x' });
});

test("an ECS task's jobs get what ECS gives the task by name, and nothing else beyond the allowlist", () => {
  const env = passed('ecs-task', { PATH: '/bin', ECS_CONTAINER_METADATA_URI_V4: 'http://169.254.170.2/v4/x', AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '/v2/c', AWS_REGION: 'eu-west-1', SOMETHING_ELSE: 'no' });
  assert.deepEqual(Object.keys(env).sort(), ['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_REGION', 'ECS_CONTAINER_METADATA_URI_V4', 'PATH']);
});

test('the kubernetes pod and the ECS task definition carry the rule as it is written here', () => {
  const config = configSchema.parse({
    pools: [
      { name: 'k', provider: 'kubernetes', image: 'runner:1', kubernetes: { namespace: 'ci' } },
      { name: 'e', provider: 'ecs', image: 'runner:1', ecs: { subnets: ['subnet-0000000a'] } },
    ],
  });
  const spec = { runnerId: 'r1', name: 'k-r1', pool: config.pools[0]!, serverUrl: 'http://x', registrationToken: 't', instanceId: 'i' };
  const pod = buildPod(spec, { owner: 'o', graceSeconds: 30 });
  assert.equal(pod.spec!.containers[0]!.env!.find((e) => e.name === 'RUNYARD_PASS_ENV')?.value, launchedAgentPassEnv('container').RUNYARD_PASS_ENV);
  const def = taskDefinitionFor(config.pools[1]!, undefined, 'i');
  assert.equal(def.input.containerDefinitions![0]!.environment!.find((e) => e.name === 'RUNYARD_PASS_ENV')?.value, launchedAgentPassEnv('ecs-task').RUNYARD_PASS_ENV);
});
