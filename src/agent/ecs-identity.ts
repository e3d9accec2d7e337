import { get } from 'node:http';

const TAG_RUNNER = 'runyard.runner';
const TAG_POOL = 'runyard.pool';
const TAG_LAUNCH_TOKEN = 'runyard.launch-token';

/**
 * An agent in an ECS task launched in a batch (RunTask with count > 1) or by a service shares
 * its overrides with the others, so it learns which runner it is from its own task's tags, read
 * from the task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4/taskWithTags; the task role
 * needs ecs:ListTagsForResource). Its launch token is the batch's entry for that runner in
 * RUNYARD_LAUNCH_TOKENS, or (service mode) the task's launch-token tag. The tag is set by the
 * control plane right after launch, so it is waited for. Sets the env the agent reads and
 * returns; does nothing unless RUNYARD_RUNNER_IDENTITY is `ecs-task-tags`.
 */
export async function adoptEcsTaskIdentity(env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<void> {
  if (env.RUNYARD_RUNNER_IDENTITY !== 'ecs-task-tags') return;
  const base = env.ECS_CONTAINER_METADATA_URI_V4;
  if (!base) throw new Error('RUNYARD_RUNNER_IDENTITY is ecs-task-tags but ECS_CONTAINER_METADATA_URI_V4 is not set: not running in an ECS task?');
  const deadline = Date.now() + timeoutMs;
  let last = '';
  // The tag usually lands within a few hundred ms of the task's start: asked often at first.
  const started = Date.now();
  for (let wait = 50; ; wait = Date.now() - started < 2_000 ? 50 : Math.min(wait * 2, 1_000)) {
    try {
      const tags = ((await getJson(`${base}/taskWithTags`)) as { TaskTags?: Record<string, string> }).TaskTags ?? {};
      const runnerId = tags[TAG_RUNNER];
      const token = runnerId ? (launchTokens(env.RUNYARD_LAUNCH_TOKENS).get(runnerId) ?? tags[TAG_LAUNCH_TOKEN]) : undefined;
      if (runnerId && token) {
        env.RUNYARD_RUNNER_ID = runnerId;
        env.RUNYARD_REGISTRATION_TOKEN = token;
        env.RUNYARD_RUNNER_NAME ??= `${tags[TAG_POOL] ?? 'ecs'}-${runnerId.slice(0, 8)}`;
        delete env.RUNYARD_LAUNCH_TOKENS; // the batch's other tokens are not this runner's business
        return;
      }
      last = runnerId ? `no launch token for runner ${runnerId}` : 'no runner tag yet';
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`could not learn this task's runner identity from ${base}/taskWithTags within ${timeoutMs / 1000}s: ${last}`);
    await new Promise((r) => setTimeout(r, wait));
  }
}

function launchTokens(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of (text ?? '').split(',')) {
    const i = pair.indexOf('=');
    if (i > 0) out.set(pair.slice(0, i), pair.slice(i + 1));
  }
  return out;
}

function getJson(url: string): Promise<unknown> {
  return new Promise((ok, fail) => {
    const req = get(url, { timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (s: string) => (body += s));
      res.on('end', () => {
        if (res.statusCode !== 200) return fail(new Error(`task metadata answered ${res.statusCode}`));
        try {
          ok(JSON.parse(body));
        } catch (err) {
          fail(err as Error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('task metadata timed out')));
    req.on('error', fail);
  });
}
