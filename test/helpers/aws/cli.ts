import { spawn, spawnSync } from 'node:child_process';
import { TEST_CREDENTIALS } from './sigv4.js';

/**
 * The path of the AWS CLI v2 (Debian's `awscli` installs it as /usr/bin/aws; a pip-installed v1
 * may come first on PATH). Throws saying what to install when there is none.
 */
export function awsCliV2(): string {
  for (const candidate of ['/usr/bin/aws', '/usr/local/bin/aws', 'aws']) {
    const r = spawnSync(candidate, ['--version'], { encoding: 'utf8' });
    if (r.status === 0 && /^aws-cli\/2\./.test((r.stdout || r.stderr).trim())) return candidate;
  }
  throw new Error('the AWS CLI v2 is not installed: apt-get install -y awscli (the tests hold the fakes to it)');
}

/**
 * Runs `aws --endpoint-url <endpoint> … --output json` with the test credentials (asynchronously,
 * so a fake served by this process can answer it).
 */
export function runAws(endpoint: string, args: string[], opts: { region?: string } = {}): Promise<{ status: number | null; stdout: string; stderr: string; json: () => any }> {
  const child = spawn(awsCliV2(), ['--endpoint-url', endpoint, '--region', opts.region ?? 'us-east-1', '--output', 'json', '--cli-read-timeout', '20', ...args], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_PAGER: '',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((ok, fail) => {
    child.once('error', fail);
    child.once('close', (status) => ok({ status, stdout, stderr, json: () => JSON.parse(stdout) }));
  });
}
