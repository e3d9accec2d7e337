/*
 * The agent against a fake control plane (test/helpers/fake-runyard.ts): the real Agent, real
 * HTTP, real job processes, no PostgreSQL. What a real server rarely does on cue: a claim
 * answered after the agent gave up on it (the seq rule), 409/410/401 on each call, a server
 * that disappears under its runners.
 */
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent, type AgentOptions } from '../src/agent/agent.js';
import type { ExecutionSummary } from '../src/agent/executor.js';
import type { RunnerConfig } from '../src/protocol/runner.js';
import { FakeRunyard, error, type Endpoint, type FakeCall, type Reply } from './helpers/fake-runyard.js';

const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function fake(config: Partial<RunnerConfig> = {}, shareWith?: FakeRunyard): Promise<FakeRunyard> {
  const f = await FakeRunyard.start({ config, shareWith });
  cleanup.push(() => f.close());
  return f;
}

interface TestAgent {
  agent: Agent;
  logs: { msg: string; [k: string]: any }[];
  stateDir: string;
}

function agentOn(server: FakeRunyard, opts: Partial<AgentOptions> = {}): TestAgent {
  const dir = mkdtempSync(join(tmpdir(), 'runyard-agent-protocol-'));
  const logs: TestAgent['logs'] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const stateDir = opts.stateDir ?? join(dir, 'state');
  const agent = new Agent({ server: server.url, registrationToken: 'ryd_reg_fake', stateDir, workDir: join(dir, 'work'), log, gracePeriodMs: 2000, env: { PATH: process.env.PATH }, ...opts });
  cleanup.push(async () => {
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { agent, logs, stateDir };
}

/** Resolves with the summary of the job `id` when the agent is done with it. */
function finished(agent: Agent, id: number): Promise<ExecutionSummary> {
  return new Promise((resolve) => {
    const on = (s: ExecutionSummary) => {
      if (s.jobId !== id) return;
      agent.off('job-finished', on);
      resolve(s);
    };
    agent.on('job-finished', on);
  });
}

const refusal = (status: number) => ({ status, body: error(status === 410 ? 'gone' : status === 409 ? 'conflict' : 'unauthorized', `refused with ${status}`) });

describe('agent against a fake runyard', { timeout: 120_000 }, () => {
  test('registers, claims with a seq, starts, streams logs and reports the result', async () => {
    const f = await fake();
    const { agent } = agentOn(f);
    await agent.start();
    const job = f.enqueue({ commands: ['echo hello from the job'] });
    const summary = await finished(agent, job.id);
    assert.equal(summary.outcome, 'succeeded');
    assert.equal(summary.reported, true);
    const claim = f.callsTo('claim').find((c) => (c.reply?.body as any)?.jobs?.length);
    assert.equal(typeof claim?.body.seq, 'number', 'claims are numbered when the server takes seq');
    assert.deepEqual(f.callsTo('start').map((c) => c.body), [{ attempt: 1 }]);
    const lines = f.callsTo('logs').flatMap((c) => c.body.lines.map((l: any) => l.m));
    assert.ok(lines.includes('hello from the job'), `log lines: ${JSON.stringify(lines)}`);
    assert.equal(f.callsTo('result')[0]?.body.exitCode, 0);
  });

  test('the first claim goes out while the control channel is still opening, before any heartbeat; a failed first connection stops claiming until it is up', async () => {
    const f = await fake({ heartbeatIntervalMs: 100 });
    const { agent } = agentOn(f);
    let release!: (r: Reply) => void;
    f.respondOnce('control', () => new Promise<Reply>((r) => (release = r)));
    await agent.start();
    const first = await f.waitFor('claim');
    const opening = await f.waitFor('control');
    assert.equal(opening.reply, undefined, 'the channel has not been answered yet');
    assert.equal(first.clientGone, false, 'the claim is waiting for work');
    assert.equal(f.callsTo('heartbeat').length, 0, 'no heartbeat before the first claim');
    release({ status: 503, body: error('unavailable', 'starting') });
    await first.gone; // the claim in flight is given up
    const second = await f.next('claim');
    assert.ok(f.callsTo('control').length >= 2, 'claims again only after a new connection');
    assert.ok(f.calls.indexOf(second) > f.calls.indexOf(f.callsTo('control')[1]!));
    const job = f.enqueue({ commands: ['true'] });
    assert.equal((await finished(agent, job.id)).reported, true);
  });

  test('a claim answered after the agent gave up is never started, and the next heartbeat lists its seq', async () => {
    const f = await fake({ heartbeatIntervalMs: 100 });
    const { agent } = agentOn(f);
    let answer!: () => void;
    const answered = new Promise<void>((r) => (answer = r));
    // The first claim is held; when the agent has hung up, it is "answered" with a job anyway.
    f.respondOnce('claim', async () => {
      await answered;
      return { status: 200, body: { jobs: [{ id: 900, attempt: 1, pool: 'fake', commands: ['true'], payload: null, env: {}, secrets: null, timeoutMs: 10_000 }] } };
    });
    await agent.start();
    const held = await f.waitFor('claim');
    // Control channel lost: the agent may no longer claim, so it aborts the claim in flight.
    f.dropControl();
    await held.gone;
    answer();
    const beat = await f.waitFor('heartbeat', (c) => c.body.abandoned?.includes(held.body.seq));
    assert.deepEqual(beat.body.jobs, [], 'the job of the abandoned claim is not running');
    // The agent claims again once connected; a later job runs; the lost one never started.
    const job = f.enqueue({ commands: ['true'] });
    assert.equal((await finished(agent, job.id)).outcome, 'succeeded');
    assert.ok(!f.callsTo('start').some((c) => c.jobId === 900), 'job 900 was never started');
    const seqs = f.callsTo('claim').map((c) => c.body.seq);
    assert.equal(new Set(seqs).size, seqs.length, 'every claim request has its own seq');
  });

  test('control events: disable gives up the claim in flight, enable claims again, cancel stops a running job', async () => {
    const f = await fake();
    const { agent } = agentOn(f);
    await agent.start();
    await f.waitFor('control');
    const parked = await f.waitFor('claim');
    f.control('disable', {});
    await parked.gone;
    const again = f.next('claim');
    f.control('enable', {});
    await again;
    const job = f.enqueue({ commands: ['echo running', 'sleep 60'] });
    await f.waitFor('logs', (c) => c.jobId === job.id && c.body.lines.some((l: { m: string }) => l.m === 'running'));
    f.control('cancel', { jobId: job.id });
    const s = await finished(agent, job.id);
    assert.equal(s.outcome, 'cancelled');
    assert.equal(f.callsTo('result').find((c) => c.jobId === job.id)?.body.outcome, 'cancelled');
  });

  for (const [endpoint, status] of [['heartbeat', 410], ['claim', 410]] as [Endpoint, number][]) {
    test(`${status} on ${endpoint}: the runner was terminated, the agent stops for good and forgets its identity`, async () => {
      const f = await fake({ heartbeatIntervalMs: 100 });
      const { agent, stateDir, logs } = agentOn(f);
      await agent.start();
      assert.ok(existsSync(join(stateDir, 'identity.json')), 'an identity is kept while registered');
      f.respondOnce(endpoint, refusal(status));
      // a claim already parked must end for the scripted one to be asked
      if (endpoint === 'claim') f.enqueue({ commands: ['true'] });
      const exit = await agent.done;
      assert.equal(exit.code, 0);
      assert.match(exit.reason, /terminated/);
      assert.ok(logs.some((l) => l.msg === 'stopping' && l.kind === 'gone'));
      assert.equal(f.callsTo('deregister').length, 0, 'a terminated runner does not deregister');
      assert.equal(existsSync(join(stateDir, 'identity.json')), false, 'the identity is forgotten');
    });
  }

  test('401 on a heartbeat: the credential was revoked, the agent exits 1', async () => {
    const f = await fake({ heartbeatIntervalMs: 100 });
    const { agent, logs } = agentOn(f);
    await agent.start();
    f.respondOnce('heartbeat', refusal(401));
    const exit = await agent.done;
    assert.equal(exit.code, 1);
    assert.match(exit.reason, /revoked/);
    assert.ok(logs.some((l) => l.msg === 'stopping' && l.kind === 'unauthorized'));
  });

  test('409 on a heartbeat or a claim is retried; the agent keeps working', async () => {
    const f = await fake({ heartbeatIntervalMs: 100 });
    const { agent } = agentOn(f);
    f.respondOnce('heartbeat', refusal(409));
    f.respondOnce('claim', refusal(409));
    await agent.start();
    const refusedBeat = await f.waitFor('heartbeat', (c) => c.reply?.status === 409);
    await f.next('heartbeat', (c) => c !== refusedBeat);
    await f.waitFor('claim', (c) => c.reply?.status === 409);
    const job = f.enqueue({ commands: ['true'] });
    assert.equal((await finished(agent, job.id)).reported, true);
  });

  for (const status of [409, 410]) {
    test(`${status} on start: the job is dropped before anything runs, unreported`, async () => {
      const f = await fake();
      const { agent } = agentOn(f);
      // the heartbeat must not end the agent first on 410: only the job call is refused
      f.respondOnce('start', refusal(status));
      await agent.start();
      const job = f.enqueue({ commands: ['echo must-not-run'] });
      const s = await finished(agent, job.id);
      assert.equal(s.reported, false);
      assert.equal(f.callsTo('logs').length, 0, 'nothing ran, nothing was logged');
      assert.equal(f.callsTo('result').length, 0);
      // the slot is free again
      const next = f.enqueue({ commands: ['true'] });
      assert.equal((await finished(agent, next.id)).reported, true);
    });

    test(`${status} on a log batch: the claim is lost, the job is killed and not reported`, async () => {
      const f = await fake();
      const { agent } = agentOn(f);
      f.respondOnce('logs', refusal(status));
      await agent.start();
      // prints, then would run for a minute: only the kill ends it
      const job = f.enqueue({ commands: ['echo one', 'sleep 60'] });
      const s = await finished(agent, job.id);
      assert.equal(s.reported, false);
      assert.equal(f.callsTo('logs').length, 1, 'no batch after the refusal');
      assert.equal(f.callsTo('result').length, 0);
      assert.ok(s.durationMs < 30_000, 'killed, not run to the end');
    });

    test(`${status} on the result: dropped after one try; the agent takes the next job`, async () => {
      const f = await fake();
      const { agent } = agentOn(f);
      f.respondOnce('result', refusal(status));
      await agent.start();
      const job = f.enqueue({ commands: ['true'] });
      assert.equal((await finished(agent, job.id)).reported, false);
      assert.equal(f.callsTo('result').length, 1);
      const next = f.enqueue({ commands: ['true'] });
      assert.equal((await finished(agent, next.id)).reported, true);
    });
  }

  test('503 on the result is retried until the server takes it', async () => {
    const f = await fake();
    const { agent } = agentOn(f);
    f.respondOnce('result', { status: 503, body: error('unavailable', 'restarting') });
    await agent.start();
    const job = f.enqueue({ commands: ['true'] });
    assert.equal((await finished(agent, job.id)).reported, true);
    assert.deepEqual(f.callsTo('result').map((c) => c.reply?.status), [503, 200]);
  });

  test('401 on re-register (token not valid on this server yet) is retried; the restarted agent is the same runner', async () => {
    const f = await fake();
    const first = agentOn(f);
    await first.agent.start();
    const id = first.agent.runnerId!;
    await first.agent.close({ keepIdentity: true });
    assert.equal(f.callsTo('offline').length, 1);
    f.respondOnce('register', refusal(401));
    f.respondOnce('register', refusal(401));
    const again = agentOn(f, { stateDir: first.stateDir });
    await again.agent.start();
    assert.equal(again.agent.runnerId, id, 'the kept identity');
    assert.deepEqual(f.callsTo('register').map((c) => c.reply?.status), [201, 401, 401, 201]);
    const job = f.enqueue({ commands: ['true'] });
    assert.equal((await finished(again.agent, job.id)).reported, true);
  });

  test('410 on register: this identity was terminated; the agent exits 1 and forgets it', async () => {
    const f = await fake();
    const { agent, stateDir } = agentOn(f);
    f.respondOnce('register', refusal(410));
    await assert.rejects(agent.start(), /terminated/);
    const exit = await agent.done;
    assert.equal(exit.code, 1);
    assert.equal(existsSync(join(stateDir, 'identity.json')), false);
  });

  test('server failover: when its server dies, the agent moves to another one it was told of and runs jobs there', async () => {
    const a = await fake({ heartbeatIntervalMs: 100 });
    const b = await fake({ heartbeatIntervalMs: 100 }, a);
    a.config.servers = b.config.servers = [a.url, b.url];
    const { agent, logs } = agentOn(a);
    await agent.start();
    await a.close();
    // Reconnected to b: the control channel, then claims.
    await b.waitFor('control');
    const job = b.enqueue({ commands: ['echo on b'] });
    const s = await finished(agent, job.id);
    assert.equal(s.reported, true);
    assert.ok(b.callsTo('result').some((c: FakeCall) => c.jobId === job.id));
    assert.ok(logs.some((l) => l.msg === 'server unreachable; switching to another server' && l.to === b.url));
  });
});
