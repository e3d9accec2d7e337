import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { FakeGithub } from './helpers/fake-github.js';
import { sign, verifySignature } from '../src/github/signature.js';
import { routeLabels } from '../src/github/routing.js';
import type { Pool } from '../src/store/queries/pools.js';

const STANDIN = resolve('test/fixtures/actions-runner-standin.mjs');
const SECRET = 'whsec-test-0123456789';
const REPO = 'acme/widgets';
const SLOW = 60_000; // two busy cores: agents take a while to start

describe('GitHub units', () => {
  test('signature: valid, tampered, missing, malformed', () => {
    const body = Buffer.from('{"a":1}');
    assert.ok(verifySignature(SECRET, body, sign(SECRET, body)));
    assert.ok(!verifySignature(SECRET, Buffer.from('{"a":2}'), sign(SECRET, body)));
    assert.ok(!verifySignature('other', body, sign(SECRET, body)));
    assert.ok(!verifySignature(SECRET, body, undefined));
    assert.ok(!verifySignature(SECRET, body, 'sha256=abc'));
    assert.ok(!verifySignature(SECRET, body, sign(SECRET, body).replace('sha256=', 'sha1=')));
  });

  test('routing: labels, class: and image:, most specific pool wins', () => {
    const pool = (name: string, c: Partial<Pool['config']>) => ({ name, config: { labels: [], ...c } }) as unknown as Pool;
    const pools = [
      pool('local', {}),
      pool('linux', { labels: ['linux'] }),
      pool('linux-gpu', { labels: ['linux', 'gpu'] }),
      pool('medium', { labels: ['linux'], class: 'medium' }),
      pool('ubuntu', { labels: ['linux'], image: 'ubuntu:22.04' }),
      pool('zz-dyn', { labels: ['linux'], provider: 'container', image: 'runner:1', dynamicImages: ['debian:*', 'ubuntu:*'] }),
    ];
    assert.equal(routeLabels(pools, ['self-hosted', 'Linux'])?.pool.name, 'linux');
    assert.equal(routeLabels(pools, ['self-hosted'])?.pool.name, 'linux'); // fewest labels; a pool without labels never serves GitHub
    assert.equal(routeLabels(pools, ['self-hosted', 'linux', 'gpu'])?.pool.name, 'linux-gpu');
    assert.equal(routeLabels(pools, ['self-hosted', 'linux', 'class:medium'])?.pool.name, 'medium');
    // a pool whose own image is the base wins over one that would build it
    assert.deepEqual(routeLabels(pools, ['self-hosted', 'image:ubuntu:22.04']), { pool: pools[4] });
    // a base only a dynamic pool allows: that pool, running the job on the base
    assert.deepEqual(routeLabels(pools, ['self-hosted', 'linux', 'image:debian:12']), { pool: pools[5], image: 'debian:12' });
    assert.equal(routeLabels(pools, ['self-hosted', 'image:alpine:3']), undefined, 'a base no pool allows');
    assert.equal(routeLabels(pools, ['self-hosted', 'class:large']), undefined);
    assert.equal(routeLabels(pools, ['self-hosted', 'arm64']), undefined);
  });
});

describe('GitHub Actions job source (fake GitHub, real agents, stand-in runner)', { timeout: 170_000 }, () => {
  let ts: TestServer;
  let gh: FakeGithub;
  let keyDir: string;
  const setGithub = (k: string, v: unknown) => ((ts.server.config.github as Record<string, unknown>)[k] = v);
  const jobs = async () => (await ts.api('GET', '/api/v1/jobs?limit=200')).body.jobs as any[];
  const job = async (id: number) => (await ts.api('GET', `/api/v1/jobs/${id}`)).body.job;
  const events = async () => (await ts.api('GET', '/api/v1/events?limit=500')).body.events as any[];
  const jitCalls = () => gh.requests.filter((r) => r.path.endsWith('/generate-jitconfig'));

  before(async () => {
    keyDir = mkdtempSync(join(tmpdir(), 'runyard-gh-'));
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyPath = join(keyDir, 'app.pem');
    writeFileSync(keyPath, privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
    gh = await new FakeGithub({ publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string, appId: '4242', installationId: 77 }).start();
    chmodSync(STANDIN, 0o755);
    ts = await startTestServer({
      config: {
        github: { webhookSecret: SECRET, appId: 4242, privateKeyPath: keyPath, apiUrl: gh.url },
        pools: [
          { name: 'gh', provider: 'process', labels: ['linux'], ephemeral: true, maxRunners: 3, idleTimeout: '30s' },
          // no runners: its jobs stay queued (for "completed before start" and reconcile)
          { name: 'gh-medium', provider: 'process', labels: ['linux'], class: 'medium', ephemeral: true, maxRunners: 0 },
        ],
      },
    });
    // The runner path is a github config key (see the report); set in place until the schema has it.
    setGithub('runnerPath', STANDIN);
    gh.webhook = { url: `${ts.url}/webhooks/github`, secret: SECRET };
  });

  after(async () => {
    await ts?.close();
    await gh?.close();
    rmSync(keyDir, { recursive: true, force: true });
  });

  test('end to end: signed queued -> runyard job -> JIT runner takes the job -> completed -> runner gone', async () => {
    const wj = gh.queueJob(REPO, ['self-hosted', 'linux']);
    const res = await gh.send('queued', wj);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.job.id;
    const j = await job(id);
    assert.equal(j.pool, 'gh');
    assert.equal(j.source, 'github');
    assert.equal(j.externalId, String(wj.id));
    assert.equal(j.idempotencyKey, `github:${wj.id}`);
    assert.deepEqual(j.secretNames, ['GITHUB_JIT_CONFIG']);
    assert.ok(!JSON.stringify(j).includes('encoded_jit_config') && !('secrets' in j) && !('secretsEnc' in j));
    const runnerName = j.payload.github.runnerName as string;
    assert.match(runnerName, new RegExp(`^runyard-${wj.id}-`));
    const ghRunner = [...gh.runners.values()].find((r) => r.name === runnerName)!;
    assert.ok(ghRunner, 'JIT runner registered on GitHub');
    assert.ok(ghRunner.labels.includes('linux'));

    const done = await waitFor('runyard job finished', async () => {
      const x = await job(id);
      return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(x.state) && x;
    }, SLOW, 200);
    const logs = (await ts.api('GET', `/api/v1/jobs/${id}/logs`)).body.lines.map((l: any) => l.m).join('\n');
    assert.equal(done.state, 'succeeded', logs);
    assert.match(logs, new RegExp(`Running job: ${wj.id}`));
    assert.equal(gh.jobs.get(wj.id)!.status, 'completed');
    assert.equal(gh.jobs.get(wj.id)!.runnerName, runnerName, 'GitHub saw our runner take the job');
    assert.ok(!gh.runners.has(ghRunner.id), 'ephemeral runner gone from GitHub');
    const after = await job(id);
    assert.equal(after.payload.github.assignedJobId, wj.id, 'in_progress recorded');
    // the runyard runner was ephemeral: it exits after its one job
    await waitFor('runyard runner terminated', async () => {
      const r = (await ts.api('GET', `/api/v1/runners/${done.runnerId}`)).body.runner;
      return r?.state === 'terminated';
    }, SLOW, 200);
    assert.deepEqual(gh.deliveries.filter((d) => d.jobId === wj.id).map((d) => [d.action, d.status]), [['queued', 201], ['in_progress', 200], ['completed', 200]]);
    // one installation token served every call (cached until it expires)
    assert.equal(gh.tokensIssued, 1);
  });

  test('bad or missing signature: 401, recorded, nothing queued', async () => {
    const before = (await jobs()).length;
    const wj = gh.queueJob(REPO, ['self-hosted', 'linux']);
    const bad = await gh.send('queued', wj, { signature: sign('not-the-secret', JSON.stringify(gh.payload('queued', wj))) });
    assert.equal(bad.status, 401);
    const missing = await gh.send('queued', wj, { signature: null });
    assert.equal(missing.status, 401);
    const garbage = await gh.send('queued', wj, { signature: 'sha256=zz' });
    assert.equal(garbage.status, 401);
    assert.equal((await jobs()).length, before);
    await ts.server.ctx.audit.flush();
    const ev = (await events()).filter((e) => e.kind === 'auth' && e.subject === 'POST /webhooks/github');
    assert.ok(ev.some((e) => /bad X-Hub-Signature-256/.test(e.reason) && e.data.details.some((d: string) => d.includes(bad.delivery))), JSON.stringify(ev));
    assert.ok(ev.some((e) => /missing X-Hub-Signature-256/.test(e.reason)));
    gh.jobs.delete(wj.id);
  });

  test('events and jobs it does not handle: 202; oversized body: 413', async () => {
    const wj = gh.queueJob(REPO, ['ubuntu-latest']);
    const hosted = await gh.send('queued', wj);
    assert.equal(hosted.status, 202);
    const push = await gh.send('queued', wj, { event: 'push' });
    assert.equal(push.status, 202);
    const ping = await gh.send('queued', wj, { event: 'ping' });
    assert.equal(ping.status, 200);
    const big = JSON.stringify({ ...gh.payload('queued', wj), pad: 'x'.repeat(1_100_000) });
    const huge = await gh.send('queued', wj, { body: big });
    assert.equal(huge.status, 413);
    gh.jobs.delete(wj.id);
  });

  test('completed before start: runyard job cancelled, JIT runner removed; redelivery is deduplicated', async () => {
    const wj = gh.queueJob(REPO, ['self-hosted', 'linux', 'class:medium']);
    const first = await gh.send('queued', wj);
    assert.equal(first.status, 201);
    const id = first.body.job.id;
    assert.equal((await job(id)).pool, 'gh-medium');
    const runnerName = (await job(id)).payload.github.runnerName;
    // replayed delivery (same X-GitHub-Delivery): nothing new, no second runner on GitHub
    const jitBefore = jitCalls().length;
    const replay = await gh.send('queued', wj, { delivery: first.delivery });
    assert.equal(replay.status, 200);
    assert.equal(replay.body.duplicate, true);
    // the same job in a new delivery: the idempotency key returns the same job
    const again = await gh.send('queued', wj);
    assert.equal(again.status, 200);
    assert.equal(again.body.job.id, id);
    assert.equal(jitCalls().length, jitBefore);
    assert.equal((await jobs()).filter((j) => j.externalId === String(wj.id)).length, 1);
    assert.equal([...gh.runners.values()].filter((r) => r.name.startsWith(`runyard-${wj.id}-`)).length, 1);

    wj.status = 'completed';
    wj.conclusion = 'cancelled';
    const done = await gh.send('completed', wj);
    assert.equal(done.status, 200);
    assert.equal(done.body.cancelled, id);
    assert.equal((await job(id)).state, 'cancelled');
    assert.ok(![...gh.runners.values()].some((r) => r.name === runnerName), 'unused runner removed from GitHub');
  });

  test('concurrent deliveries of one job: one runyard job, the surplus JIT runner removed', async () => {
    const wj = gh.queueJob(REPO, ['self-hosted', 'linux', 'class:medium']);
    const results = await Promise.all([gh.send('queued', wj), gh.send('queued', wj), gh.send('queued', wj)]);
    assert.deepEqual(results.map((r) => r.status).sort(), [200, 200, 201]);
    const ids = new Set(results.map((r) => r.body.job.id));
    assert.equal(ids.size, 1);
    assert.equal((await jobs()).filter((j) => j.externalId === String(wj.id)).length, 1);
    const runnerName = (await job([...ids][0])).payload.github.runnerName;
    assert.deepEqual([...gh.runners.values()].filter((r) => r.name.startsWith(`runyard-${wj.id}-`)).map((r) => r.name), [runnerName]);
    wj.status = 'completed';
    wj.conclusion = 'cancelled';
    assert.equal((await gh.send('completed', wj)).body.cancelled, [...ids][0]);
  });

  test('unknown labels: 422, recorded and visible, never dropped silently', async () => {
    const wj = gh.queueJob(REPO, ['self-hosted', 'arm64', 'class:huge']);
    const res = await gh.send('queued', wj);
    assert.equal(res.status, 422);
    assert.match(res.body.error.message, /no pool serves labels/);
    assert.equal((await jobs()).filter((j) => j.externalId === String(wj.id)).length, 0);
    const ev = (await events()).find((e) => e.kind === 'github' && e.subject === `workflow_job:${wj.id}`);
    assert.ok(ev && /no pool serves labels/.test(ev.reason));
    assert.equal([...gh.runners.values()].filter((r) => r.name.startsWith(`runyard-${wj.id}-`)).length, 0, 'no runner registered for it');
    gh.jobs.delete(wj.id);
  });

  test('webhook input cannot steer GitHub calls: a bad repository, too many or bad labels, a NUL runner name: 422, recorded, nothing called or queued', async () => {
    const before = gh.requests.length;
    const refused = async (wj: ReturnType<typeof gh.queueJob>, action: string, field: RegExp, mutate?: (p: any) => void) => {
      const payload = gh.payload(action, wj);
      mutate?.(payload);
      const res = await gh.send(action, wj, { body: JSON.stringify(payload) });
      assert.equal(res.status, 422, JSON.stringify(res.body));
      assert.match(res.body.error.field, field);
      assert.equal((await jobs()).filter((j) => j.externalId === String(wj.id)).length, 0, 'no job');
      assert.ok((await events()).some((e) => e.kind === 'github' && e.subject === `delivery:${res.delivery}` && /refused workflow_job/.test(e.reason)), 'recorded');
      gh.jobs.delete(wj.id);
      return res;
    };
    const evil = await refused(gh.queueJob('acme/widgets/../../../orgs/evil-org', ['self-hosted', 'linux']), 'queued', /^repository\.full_name$/);
    assert.match(evil.body.error.message, /owner\/name/);
    for (const repo of ['acme/..', 'acme/widgets?x=1', 'acme/wid%2fgets', '-acme/widgets', 'acme'])
      await refused(gh.queueJob(repo, ['self-hosted', 'linux']), 'queued', /^repository\.full_name$/);
    await refused(gh.queueJob(REPO, ['self-hosted', 'linux']), 'queued', /^organization\.login$/, (p) => (p.organization.login = '../orgs/evil-org'));
    await refused(gh.queueJob(REPO, ['self-hosted', ...Array.from({ length: 10_000 }, (_, i) => `l${i}`)]), 'queued', /^workflow_job\.labels$/);
    await refused(gh.queueJob(REPO, ['self-hosted', 'x'.repeat(129)]), 'queued', /^workflow_job\.labels\[1\]$/);
    await refused(gh.queueJob(REPO, ['self-hosted', 'li\u0000nux']), 'queued', /^workflow_job\.labels\[1\]$/);
    const running = gh.queueJob(REPO, ['self-hosted', 'linux']);
    running.runnerName = 'runyard-\ud800';
    await refused(running, 'in_progress', /^workflow_job\.runner_name$/);
    const calls = gh.requests.slice(before);
    assert.deepEqual(calls.filter((r) => /evil-org|\.\./.test(r.path)), [], 'GitHub was never called outside the repository');
    assert.deepEqual(calls.filter((r) => r.path.endsWith('/generate-jitconfig')), [], 'no runner registered for any of them');
    // 64 labels, the API's own limit, are still fine (unroutable here, so 422 for that reason)
    const many = gh.queueJob(REPO, ['self-hosted', ...Array.from({ length: 63 }, (_, i) => `l${i}`)]);
    const ok = await gh.send('queued', many);
    assert.equal(ok.status, 422);
    assert.match(ok.body.error.message, /no pool serves labels/);
    gh.jobs.delete(many.id);
  });

  test('the GitHub client refuses a path that climbs out of its resource, whatever built it', async () => {
    const client = ts.server.github.client;
    const before = gh.requests.length;
    await assert.rejects(client.request('GET', '/repos/acme/widgets/../../../orgs/evil-org/actions/runners', undefined, { repo: REPO }), /not a plain name/);
    await assert.rejects(client.request('GET', '/repos/acme/wid%2e%2e/actions/runners', undefined, { repo: REPO }), /not a plain name/);
    assert.equal(gh.requests.slice(before).filter((r) => /evil-org|%2e/i.test(r.path)).length, 0);
  });

  test('GitHub API errors: 502 and recorded; reconcile later queues the missed job', async () => {
    const wj = gh.queueJob(REPO, ['self-hosted', 'linux', 'class:medium']);
    gh.fail({ method: 'POST', path: /generate-jitconfig$/, status: 500, times: 4 });
    const res = await gh.send('queued', wj);
    assert.equal(res.status, 502, JSON.stringify(res.body));
    assert.equal((await jobs()).filter((j) => j.externalId === String(wj.id)).length, 0);
    assert.ok((await events()).some((e) => e.kind === 'github' && e.subject === `workflow_job:${wj.id}` && /GitHub API error/.test(e.reason)));
    const report: any = await ts.server.github.reconcile(Date.now(), true);
    const j = (await jobs()).find((x) => x.externalId === String(wj.id));
    assert.ok(j, `reconcile queued the missed job: ${JSON.stringify(report)}`);
    assert.ok(report.queued.includes(j.id));
    // and a 4xx from GitHub (e.g. missing permission) is not retried
    const wj2 = gh.queueJob(REPO, ['self-hosted', 'linux', 'class:medium']);
    gh.fail({ method: 'POST', path: /generate-jitconfig$/, status: 403, body: { message: 'Resource not accessible by integration' } });
    const n = jitCalls().length;
    const res2 = await gh.send('queued', wj2);
    assert.equal(res2.status, 502);
    assert.match(res2.body.error.message, /Resource not accessible/);
    assert.equal(jitCalls().length, n + 1);
    for (const x of [wj, wj2]) {
      x.status = 'completed';
      x.conclusion = 'cancelled';
      await gh.send('completed', x);
    }
  });

  test('rate limits: retry-after is honoured; an exhausted limit fails fast with 503', async () => {
    const wj = gh.queueJob(REPO, ['self-hosted', 'linux', 'class:medium']);
    gh.fail({ method: 'POST', path: /generate-jitconfig$/, status: 429, headers: { 'retry-after': '1' } });
    const n = jitCalls().length;
    const res = await gh.send('queued', wj);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const calls = jitCalls().slice(n);
    assert.equal(calls.length, 2);
    assert.ok(calls[1]!.at - calls[0]!.at >= 950, `waited ${calls[1]!.at - calls[0]!.at}ms`);

    const wj2 = gh.queueJob(REPO, ['self-hosted', 'linux', 'class:medium']);
    const reset = Math.floor(Date.now() / 1000) + 3600;
    gh.fail({ method: 'POST', path: /generate-jitconfig$/, status: 403, headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset) }, body: { message: 'API rate limit exceeded' } });
    const limited = await gh.send('queued', wj2);
    assert.equal(limited.status, 503);
    assert.equal(limited.body.error.code, 'rate_limited');
    // while the limit is in force no call goes out
    const m = gh.requests.length;
    const again = await gh.send('queued', wj2);
    assert.equal(again.status, 503);
    assert.equal(gh.requests.length, m);
    ts.server.github.client.blockedUntil = 0; // the limit "resets"
    for (const x of [wj, wj2]) {
      x.status = 'completed';
      x.conclusion = 'cancelled';
      await gh.send('completed', x);
    }
  });

  test('a runner that got no GitHub job is removed and terminated; offline leftovers are removed', async () => {
    const wj = gh.queueJob(REPO, ['self-hosted', 'linux']);
    const res = await gh.send('queued', wj);
    assert.equal(res.status, 201);
    const id = res.body.job.id;
    // another runner takes the GitHub job first: ours will wait for a job that never comes
    wj.status = 'in_progress';
    wj.runnerName = 'someone-else';
    const runnerName = (await job(id)).payload.github.runnerName;
    await waitFor('JIT runner online', () => [...gh.runners.values()].some((r) => r.name === runnerName && r.status === 'online'), SLOW, 200);
    setGithub('assignTimeout', 500);
    try {
      await waitFor('unassigned runner cancelled', async () => {
        await ts.server.github.reconcile(Date.now(), true);
        return (await job(id)).state === 'cancelled';
      }, 20_000, 300);
    } finally {
      setGithub('assignTimeout', 300_000);
    }
    assert.ok(![...gh.runners.values()].some((r) => r.name === runnerName), 'removed from GitHub');
    const ranOn = (await job(id)).runnerId;
    await waitFor('its runyard runner terminated', async () => (await ts.api('GET', `/api/v1/runners/${ranOn}`)).body.runner?.state === 'terminated', SLOW, 200);
    assert.ok((await ts.api('GET', `/api/v1/jobs/${id}/events`)).body.events.some((e: any) => /got no GitHub job/.test(e.reason ?? '')));

    // leftovers: an offline runyard runner GitHub still lists is removed; others are left alone
    gh.runners.set(1, { id: 1, name: 'runyard-1-abcdef', repo: REPO, labels: ['self-hosted'], status: 'offline', busy: false, token: 'x', jobId: null });
    gh.runners.set(2, { id: 2, name: 'build-box', repo: REPO, labels: ['self-hosted'], status: 'offline', busy: false, token: 'x', jobId: null });
    const report: any = await ts.server.github.reconcile(Date.now(), true);
    assert.deepEqual(report.removedRunners, ['runyard-1-abcdef']);
    assert.ok(!gh.runners.has(1));
    assert.ok(gh.runners.has(2));
    gh.runners.delete(2);
    wj.status = 'completed';
  });
  test('installation tokens are re-minted near expiry', async () => {
    gh.tokenTtlMs = 30_000; // inside the 60 s safety margin: every call mints a new one
    const src = ts.server.github;
    src.client.forgetTokens();
    const n = gh.tokensIssued;
    await src.client.request('GET', `/repos/${REPO}/actions/runners`, undefined, { installationId: 77 });
    await src.client.request('GET', `/repos/${REPO}/actions/runners`, undefined, { installationId: 77 });
    assert.equal(gh.tokensIssued, n + 2);
    gh.tokenTtlMs = 3_600_000;
    await src.client.request('GET', `/repos/${REPO}/actions/runners`, undefined, { installationId: 77 });
    await src.client.request('GET', `/repos/${REPO}/actions/runners`, undefined, { installationId: 77 });
    assert.equal(gh.tokensIssued, n + 3);
  });

  test('personal access token and organisation runners: end to end', async () => {
    const saved = { ...(ts.server.config.github as Record<string, unknown>) };
    gh.pat = 'ghp_testtoken0123456789';
    setGithub('appId', undefined);
    setGithub('privateKeyPath', undefined);
    setGithub('token', gh.pat);
    setGithub('scope', 'org');
    try {
      const wj = gh.queueJob(REPO, ['self-hosted', 'linux']);
      const res = await gh.send('queued', wj);
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.ok(gh.requests.some((r) => r.method === 'POST' && r.path === '/orgs/acme/actions/runners/generate-jitconfig' && r.status === 201));
      const runnerName = (await job(res.body.job.id)).payload.github.runnerName;
      assert.equal([...gh.runners.values()].find((r) => r.name === runnerName)?.repo, 'org:acme');
      const done = await waitFor('job finished', async () => {
        const x = await job(res.body.job.id);
        return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(x.state) && x;
      }, SLOW, 200);
      assert.equal(done.state, 'succeeded');
      assert.equal(gh.jobs.get(wj.id)!.runnerName, runnerName);
      assert.equal(gh.authorizations[gh.authorizations.length - 1], gh.pat);
      assert.ok(![...gh.runners.values()].some((r) => r.name === runnerName));
    } finally {
      for (const k of ['appId', 'privateKeyPath', 'token', 'scope']) setGithub(k, saved[k]);
    }
  });
});
