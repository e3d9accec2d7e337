/*
 * Issue 19, the agent: Ctrl-C keeps the runner's identity (offline, same UUID on the next
 * start), a lock left by a killed agent is taken over with a warning, and the health server
 * listens on loopback unless told otherwise. Real `runyard agent` processes against a real
 * server over PostgreSQL.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { getJob, killAllAgents, poolWithToken, startAgent, submit, waitForJob } from './helpers/agent.js';

let t: TestServer;
let tmp: string;
const runnerState = async (id: string) => (await t.api('GET', `/api/v1/runners/${id}`)).body.runner.state;

before(async () => {
  t = await startTestServer({ store: 'postgres', loops: false, config: { runner: { heartbeatInterval: 300, pingInterval: 300 } } });
  tmp = mkdtempSync(join(tmpdir(), 'runyard-newcomer-agent-'));
});

after(async () => {
  await killAllAgents();
  await t?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** Whether a TCP connection to host:port is accepted. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((ok) => {
    const s = connect({ host, port }, () => {
      s.destroy();
      ok(true);
    });
    s.on('error', () => ok(false));
  });
}

describe('newcomer: the agent keeps its identity and its lock honest', () => {
  test('7. Ctrl-C drains and exits keeping the UUID and key: the runner is offline at once and the next start is the same runner', async () => {
    const token = await poolWithToken(t, { name: 'keeper' });
    const stateDir = join(tmp, 'keeper-state');
    const first = startAgent({ server: t.url, token, stateDir });
    const id = await first.runnerId();
    await first.waitForLog('ready for jobs');
    const identity = readFileSync(join(stateDir, 'identity.json'), 'utf8');
    first.signal('SIGINT');
    assert.equal(await first.exitCode(), 0, first.stderr);
    assert.equal(await runnerState(id), 'offline', 'offline at once, not after the heartbeat timeout');
    assert.equal(readFileSync(join(stateDir, 'identity.json'), 'utf8'), identity, 'identity kept');
    assert.ok(!existsSync(join(stateDir, 'agent.lock')), 'lock released');

    const second = startAgent({ server: t.url, token, stateDir });
    assert.equal(await second.runnerId(), id, 'the same runner after a restart');
    await second.waitForLog('ready for jobs');
    assert.equal(await runnerState(id), 'idle');
    const job = await submit(t, { pool: 'keeper', command: 'echo back' });
    assert.equal((await waitForJob(t, job.id)).state, 'succeeded');
    assert.equal((await getJob(t, job.id)).runnerId, id);

    // an operator's drain still ends the runner for good
    assert.equal((await t.api('POST', `/api/v1/runners/${id}/drain`)).status, 200);
    assert.equal(await second.exitCode(), 0);
    assert.equal(await runnerState(id), 'terminated');
    assert.ok(!existsSync(join(stateDir, 'identity.json')), 'a deregistered identity is forgotten');
  });

  test('7. a lock left by an agent that is gone is taken over with a warning; a live one is refused', async () => {
    const token = await poolWithToken(t, { name: 'stale' });
    // a dead pid: a process that has exited
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout.trim());
    const stateDir = join(tmp, 'stale-state');
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(join(stateDir, 'agent.lock'), `${deadPid}\n`);
    const a = startAgent({ server: t.url, token, stateDir });
    const warn = await a.waitForLog('state dir lock of an agent that is gone (killed?) taken over');
    assert.equal(warn.pid, deadPid);
    assert.equal(warn.level, 40);
    await a.waitForLog('ready for jobs');
    a.signal('SIGKILL');
    await a.exited;

    // pid reuse: the pid is alive but belongs to a process started at another time (here: this
    // test process, with a start time that is not its own)
    const reused = join(tmp, 'reused-state');
    mkdirSync(reused, { recursive: true });
    writeFileSync(join(reused, 'agent.lock'), JSON.stringify({ pid: process.pid, start: '1' }) + '\n');
    const b = startAgent({ server: t.url, token, stateDir: reused });
    assert.equal((await b.waitForLog('state dir lock of an agent that is gone (killed?) taken over')).pid, process.pid);
    await b.waitForLog('ready for jobs');
    const twin = startAgent({ server: t.url, token, stateDir: reused });
    assert.equal(await twin.exitCode(), 1);
    assert.match(twin.stderr, new RegExp(`state dir .*reused-state is in use by another agent \\(pid ${b.child.pid}\\)`));
    b.signal('SIGTERM');
    assert.equal(await b.exitCode(), 0);
  });

  test('10. the health server binds 127.0.0.1 unless --health-host says otherwise', async () => {
    const token = await poolWithToken(t, { name: 'probes' });
    const a = startAgent({ server: t.url, token, args: ['--health-port', '0'] });
    const listening = await a.waitForLog('health server listening');
    assert.equal(listening.host, '127.0.0.1');
    assert.ok(await accepts('127.0.0.1', listening.port));
    const external = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
    if (external) assert.equal(await accepts(external.address, listening.port), false, `not reachable on ${external.address}`);
    await waitFor('readyz 200 on loopback', async () => (await fetch(`http://127.0.0.1:${listening.port}/readyz`)).status === 200);
    a.signal('SIGTERM');
    assert.equal(await a.exitCode(), 0);
  });
});
