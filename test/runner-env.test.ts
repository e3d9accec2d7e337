/*
 * What environment runners and jobs get (issue 13, hole 3): an allowlist, never the control
 * plane's whole environment. A real `runyard up` started with secret-looking variables launches a
 * process runner; a job prints its environment into its stored logs. And a hand-started agent
 * keeps its own variables from its jobs unless --pass-env names them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPgDatabase } from './helpers/db.js';
import { agentPids, freePort, ServerProcess } from './helpers/process-server.js';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { allLogs, killAllAgents, poolWithToken, startAgent, submit, waitForJob } from './helpers/agent.js';

const SECRETS = { PGPASSWORD: 'pg-secret-7f3a91', AWS_SECRET_ACCESS_KEY: 'aws-secret-5c2e08', GITHUB_TOKEN: 'ghp_secret0d94b1' };

describe('runner environment', () => {
  let dataDir: string;
  let db: { url: string; drop: () => Promise<void> };
  let server: ServerProcess;
  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'runyard-env-'));
    db = await createPgDatabase();
    const yaml = 'pools:\n  - name: local\n    provider: process\n    maxRunners: 1\n    env: { POOL_VAR: from-pool }\n';
    server = new ServerProcess({ dbUrl: db.url, dataDir, port: await freePort(), yaml, env: { ...SECRETS, LANG: 'C.UTF-8', TZ: 'UTC' } });
    await server.start();
  });
  after(async () => {
    await server?.stop();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a process runner and its job see the allowlist, the pool and the job env, and no secret of the server', async () => {
    const { job } = await server.api('POST', '/api/v1/jobs', { pool: 'local', command: 'env | sort', env: { JOB_VAR: 'from-job' } });
    let done: any;
    await waitFor('job finished', async () => {
      done = (await server.api('GET', `/api/v1/jobs/${job.id}`)).job;
      return ['succeeded', 'failed'].includes(done.state);
    }, 60_000, 100);
    assert.equal(done.state, 'succeeded', done.error);
    const lines: string[] = [];
    for (let after = 0; ; ) {
      const page = await server.api('GET', `/api/v1/jobs/${job.id}/logs?after=${after}`);
      lines.push(...page.lines.filter((l: any) => l.s === 'o').map((l: any) => l.m));
      if (page.nextAfter === after) break;
      after = page.nextAfter;
    }
    const text = lines.join('\n');
    const names = new Set(text.split('\n').map((l: string) => l.split('=')[0]));
    for (const [k, v] of Object.entries(SECRETS)) {
      assert.ok(!names.has(k), `${k} reached the job`);
      assert.ok(!text.includes(v), `the value of ${k} reached the job's logs`);
    }
    for (const k of ['PATH', 'HOME', 'LANG', 'TZ', 'POOL_VAR', 'JOB_VAR', 'RUNYARD_JOB_ID', 'RUNYARD_OUTPUT']) assert.ok(names.has(k), `${k} missing from the job's env`);
    assert.ok(!names.has('RUNYARD_REGISTRATION_TOKEN') && !names.has('RUNYARD_SERVER'), "the agent's own settings stay with the agent");
    const unexpected = [...names].filter((n) => n && !/^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|TZ|TMPDIR|LC_\w+|POOL_VAR|JOB_VAR|RUNYARD_\w+|PWD|SHLVL|_|OLDPWD)$/.test(n));
    assert.deepEqual(unexpected, [], 'nothing beyond the allowlist, the pool, the job and what the shell sets');

    // The agent process itself was started from the allowlist too.
    const pids = agentPids(join(dataDir, 'runners'));
    assert.ok(pids.length > 0, 'the runner is alive');
    for (const pid of pids) {
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      for (const v of Object.values(SECRETS)) assert.ok(!environ.includes(v), `agent ${pid} got a secret of the server`);
    }
  });
});

describe('hand-started agent environment', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ store: 'postgres', loops: false, config: { runner: { heartbeatInterval: 300, pingInterval: 300 } } });
  });
  after(async () => {
    await killAllAgents();
    await t?.close();
  });

  test('jobs get only the allowlist of the agent\'s environment, plus what --pass-env names', async () => {
    const env = { PGPASSWORD: SECRETS.PGPASSWORD, TOOL_HOME: '/opt/tool', TOOL_BIN: '/opt/tool/bin' };
    const plain = startAgent({ server: t.url, token: await poolWithToken(t, { name: 'env-plain' }), env });
    const passing = startAgent({ server: t.url, token: await poolWithToken(t, { name: 'env-pass' }), env: { ...env, RUNYARD_PASS_ENV: 'TOOL_*' } });
    // What container runners get: their env is the image's and the pool's, so all of it passes.
    const all = startAgent({ server: t.url, token: await poolWithToken(t, { name: 'env-all' }), env: { TOOL_HOME: '/opt/tool', RUNYARD_PASS_ENV: '*' } });
    await Promise.all([plain, passing, all].map((a) => a.waitForLog('ready for jobs')));
    const lines = async (pool: string) => {
      const job = await submit(t, { pool, command: 'env' });
      assert.equal((await waitForJob(t, job.id)).state, 'succeeded');
      return (await allLogs(t, job.id)).map((l) => l.m);
    };
    const a = await lines('env-plain');
    assert.ok(!a.some((l) => l.includes(SECRETS.PGPASSWORD) || l.startsWith('TOOL_')), a.join('\n'));
    assert.ok(!a.some((l) => l.startsWith('RUNYARD_REGISTRATION_TOKEN=')));
    const b = await lines('env-pass');
    assert.ok(b.includes('TOOL_HOME=/opt/tool') && b.includes('TOOL_BIN=/opt/tool/bin'), b.join('\n'));
    assert.ok(!b.some((l) => l.includes(SECRETS.PGPASSWORD)));
    const c = await lines('env-all');
    assert.ok(c.includes('TOOL_HOME=/opt/tool'), c.join('\n'));
    assert.ok(!c.some((l) => l.startsWith('RUNYARD_REGISTRATION_TOKEN=') || l.startsWith('RUNYARD_PASS_ENV=')), 'never the agent\'s RUNYARD_* settings');
  });
});
