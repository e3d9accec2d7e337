/*
 * The user data of a runner instance: a MIME multipart document as cloud-init reads it. The
 * cloud-config part puts `scripts-user` in `always` mode, so the shell script part runs at every
 * boot, not only the first: a stopped instance started again for a new runner starts its agent
 * again, with the runner id and launch token its user data was given while it was stopped
 * (ModifyInstanceAttribute). The agent comes from the AMI; nothing is downloaded at boot. When the
 * agent exits (ephemeral runner done, runner deleted, drained), the instance powers off, which
 * stops it (shutdown behaviour `stop`) for the warm pool or terminates it (spot).
 */
import { CONTAINER_STATE_DIR, CONTAINER_WORK_DIR } from '../container/container-provider.js';

export const BOUNDARY = '//runyard-boundary';
/** EC2's limit on user data, before base64. */
export const USER_DATA_LIMIT = 16_384;

export interface RunnerBoot {
  serverUrl: string;
  registrationToken: string;
  runnerId: string;
  name: string;
  instanceId: string;
  env: Record<string, string>;
  agentDir: string;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The agent's command line: through the bundle's own loader, as the runner images start it. */
export function agentCommand(dir: string): string {
  return [`${dir}/node/lib/ld.so`, '--library-path', `${dir}/node/lib`, `${dir}/node/bin/node`, `${dir}/app/bin/runyard.js`, 'agent'].map(quote).join(' ');
}

export function runnerScript(b: RunnerBoot): string {
  const env: Record<string, string> = {
    ...b.env,
    RUNYARD_SERVER: b.serverUrl,
    RUNYARD_REGISTRATION_TOKEN: b.registrationToken,
    RUNYARD_RUNNER_ID: b.runnerId,
    RUNYARD_RUNNER_NAME: b.name,
    RUNYARD_STATE_DIR: CONTAINER_STATE_DIR,
    RUNYARD_WORK_DIR: CONTAINER_WORK_DIR,
    RUNYARD_INSTANCE_ID: b.instanceId,
  };
  return [
    '#!/bin/sh',
    `# runyard runner ${b.runnerId}: runs at every boot; its launch token is single-use, so every start gets new user data`,
    ...Object.entries(env).map(([k, v]) => `export ${k}=${quote(v)}`),
    agentCommand(b.agentDir),
    'echo "runyard agent exited with status $?; powering off"',
    'poweroff',
    '',
  ].join('\n');
}

export function userData(b: RunnerBoot): string {
  const part = (type: string, file: string, body: string) =>
    [`--${BOUNDARY}`, `Content-Type: ${type}; charset="us-ascii"`, 'MIME-Version: 1.0', 'Content-Transfer-Encoding: 7bit', `Content-Disposition: attachment; filename="${file}"`, '', body].join('\n');
  const doc = [
    `Content-Type: multipart/mixed; boundary="${BOUNDARY}"`,
    'MIME-Version: 1.0',
    '',
    part('text/cloud-config', 'cloud-config.txt', '#cloud-config\ncloud_final_modules:\n- [scripts-user, always]\n'),
    part('text/x-shellscript', 'runyard-agent.sh', runnerScript(b)),
    `--${BOUNDARY}--`,
    '',
  ].join('\n');
  if (Buffer.byteLength(doc) > USER_DATA_LIMIT) throw new Error(`the runner's user data is ${Buffer.byteLength(doc)} bytes; EC2 allows ${USER_DATA_LIMIT} (the pool's env is too large)`);
  return doc;
}
