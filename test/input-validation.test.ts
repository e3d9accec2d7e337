/*
 * Bad input, walked field by field (issue 13, hole 4): every string and number field of every
 * write endpoint gets NUL, a lone surrogate, an out-of-range number and a value nested 100,000
 * deep, in a raw body (JSON.stringify would choke on the nesting and hides nothing: "\ud800"
 * stays an escape the server parses into a lone surrogate). Each must be a 400 naming the field,
 * with no stack, and change nothing in the store.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { STORES } from './helpers/db.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { ProtocolRunner, storeSnapshot } from './helpers/http.js';
import { allLogs, killAllAgents, poolWithToken, startAgent, submit, waitForJob } from './helpers/agent.js';
import { ConfigError, formatPath, loadConfig } from '../src/config/load.js';
import { jsonProblem } from '../src/lib/validation.js';

type Path = (string | number)[];
type Kind = 'string' | 'number' | 'int4' | 'duration' | 'json' | 'labels';
interface Bad {
  what: string;
  raw: string;
}

const DEEP = 100_000;
const deep = '['.repeat(DEEP) + ']'.repeat(DEEP);
const NUL: Bad = { what: 'NUL', raw: '"a\\u0000b"' };
const LONE: Bad = { what: 'lone surrogate', raw: '"a\\ud800b"' };
const DEEP_VALUE: Bad = { what: `nested ${DEEP} deep`, raw: deep };

/** The bad values for a kind of field. */
const BAD: Record<Kind, Bad[]> = {
  string: [NUL, LONE, DEEP_VALUE],
  number: [{ what: '1e19', raw: '1e19' }, { what: '1e308', raw: '1e308' }, { what: '-1e19', raw: '-1e19' }, DEEP_VALUE],
  int4: [{ what: 'past int4', raw: '2147483648' }, { what: '1e19', raw: '1e19' }, { what: '-1e19', raw: '-1e19' }, DEEP_VALUE],
  duration: [
    { what: '1e19 ms', raw: '1e19' },
    { what: '"9999999999999d"', raw: '"9999999999999d"' },
    { what: '1e308 ms', raw: '1e308' },
    { what: 'NUL in a duration', raw: '"5m\\u0000"' },
    DEEP_VALUE,
  ],
  json: [
    { what: 'NUL inside', raw: '{"a":["x\\u0000"]}' },
    { what: 'lone surrogate in a key', raw: '{"\\udc00":1}' },
    { what: 'nested 65 deep', raw: '['.repeat(65) + ']'.repeat(65) },
    DEEP_VALUE,
  ],
  labels: [{ what: '10,001 labels', raw: JSON.stringify(Array.from({ length: 10_001 }, (_, i) => `l${i}`)) }, DEEP_VALUE],
};

/** `base` with the value at `path` replaced by `raw` JSON text. */
function rawBody(base: unknown, path: Path, raw: string): string {
  const marker = `__bad_${randomUUID()}__`;
  const copy = structuredClone(base) as any;
  let at = copy;
  path.slice(0, -1).forEach((k, i) => (at = at[k] ??= typeof path[i + 1] === 'number' ? [] : {}));
  at[path[path.length - 1]!] = marker;
  return JSON.stringify(copy).replace(`"${marker}"`, raw);
}

interface Endpoint {
  name: string;
  method: string;
  path: () => string;
  token: () => string;
  base: () => unknown;
  fields: [Path, Kind, ...Bad[]][];
}

const jobFields = (p: Path = []): [Path, Kind][] => [
  [[...p, 'command'], 'string'],
  [[...p, 'pool'], 'string'],
  [[...p, 'payload'], 'json'],
  [[...p, 'env', 'FOO'], 'string'],
  [[...p, 'secrets', 'TOKEN'], 'string'],
  [[...p, 'labels', 0], 'string'],
  [[...p, 'labels'], 'labels'],
  [[...p, 'image'], 'string'],
  [[...p, 'idempotencyKey'], 'string'],
  [[...p, 'timeout'], 'duration'],
  [[...p, 'cpu'], 'number'],
  [[...p, 'memoryMb'], 'number'],
  [[...p, 'maxAttempts'], 'number'],
];

const poolFields = (p: Path = []): [Path, Kind, ...Bad[]][] => [
  [[...p, 'name'], 'string'],
  [[...p, 'image'], 'string'],
  [[...p, 'class'], 'string'],
  [[...p, 'labels', 0], 'string'],
  [[...p, 'labels'], 'labels'],
  [[...p, 'setup', 0], 'string'],
  [[...p, 'env', 'FOO'], 'string'],
  [[...p, 'distribution'], 'string'],
  // 0 breaks a pool as it does a job; 1e308 made every submit 500 or kept jobs queued forever
  [[...p, 'jobTimeout'], 'duration', { what: '0', raw: '0' }],
  [[...p, 'startTimeout'], 'duration', { what: '0', raw: '0' }],
  [[...p, 'idleTimeout'], 'duration'],
  [[...p, 'maxLifetime'], 'duration', { what: '0', raw: '0' }],
  [[...p, 'maxJobsPerRunner'], 'number'],
  [[...p, 'minIdle'], 'number'],
  [[...p, 'maxRunners'], 'number'],
];

for (const store of STORES) {
  describe(`every write endpoint refuses bad values with a 400 naming the field (${store})`, () => {
    let t: TestServer;
    let runner: ProtocolRunner;
    let job: { id: number; attempt: number };
    let regToken = '';
    before(async () => {
      t = await startTestServer({ store, loops: false, config: { pools: [{ name: 'local', maxRunners: 0 }, { name: 'iv', maxRunners: 0, maxJobsPerRunner: 4 }] } });
      runner = new ProtocolRunner(t);
      await runner.register('iv');
      const submitted = await t.api('POST', '/api/v1/jobs', { pool: 'iv', command: 'true' });
      assert.equal(submitted.status, 201);
      [job] = await runner.claim(1);
      assert.equal((await runner.start(job!)).status, 200);
      // one more queued job: a claim that slipped through would change it
      assert.equal((await t.api('POST', '/api/v1/jobs', { pool: 'iv', command: 'true' })).status, 201);
      regToken = (await t.api('POST', '/api/v1/tokens', { pool: 'iv' })).body.secret;
    });
    after(() => t?.close());

    const admin = () => t.token;
    const asRunner = () => runner.credential;
    const endpoints = (): Endpoint[] => [
      { name: 'submit', method: 'POST', path: () => '/api/v1/jobs', token: admin, base: () => ({ pool: 'iv', command: 'true' }), fields: jobFields() },
      { name: 'submit (commands)', method: 'POST', path: () => '/api/v1/jobs', token: admin, base: () => ({ pool: 'iv', commands: ['true'] }), fields: [[['commands', 0], 'string']] },
      { name: 'batch', method: 'POST', path: () => '/api/v1/jobs/batch', token: admin, base: () => ({ jobs: [{ pool: 'iv', command: 'true' }] }), fields: jobFields(['jobs', 0]) },
      { name: 'pools apply', method: 'POST', path: () => '/api/v1/pools', token: admin, base: () => ({ name: 'p-new' }), fields: poolFields() },
      { name: 'pools apply (list)', method: 'POST', path: () => '/api/v1/pools', token: admin, base: () => ({ pools: [{ name: 'p-new' }] }), fields: poolFields(['pools', 0]) },
      { name: 'pools put', method: 'PUT', path: () => '/api/v1/pools/iv', token: admin, base: () => ({ name: 'iv', maxRunners: 0 }), fields: poolFields().filter(([p]) => p[0] !== 'name') },
      {
        name: 'tokens create',
        method: 'POST',
        path: () => '/api/v1/tokens',
        token: admin,
        base: () => ({ pool: 'iv' }),
        fields: [[['pool'], 'string'], [['description'], 'string'], [['expiresIn'], 'duration', { what: '1e300 ms', raw: '1e300' }]],
      },
      {
        name: 'register',
        method: 'POST',
        path: () => '/api/v1/runners/register',
        token: () => regToken,
        base: () => ({ id: randomUUID(), name: 'r', version: 'v', publicKey: runner.keys.publicKey, labels: [] }),
        fields: [
          [['id'], 'string'],
          [['name'], 'string'],
          [['version'], 'string'],
          // an invalid key is bad input (400), not a refusal (403)
          [['publicKey'], 'string', { what: 'not an X25519 key', raw: '"bm90IGEga2V5"' }],
          [['labels', 0], 'string'],
          [['labels'], 'labels'],
        ],
      },
      {
        name: 'heartbeat',
        method: 'POST',
        path: () => `/api/v1/runners/${runner.id}/heartbeat`,
        token: asRunner,
        base: () => ({ version: 'v', jobs: [{ id: job.id, attempt: job.attempt }], abandoned: [] }),
        fields: [[['version'], 'string'], [['jobs', 0, 'id'], 'number'], [['jobs', 0, 'attempt'], 'int4'], [['abandoned', 0], 'int4']],
      },
      {
        name: 'claim',
        method: 'POST',
        path: () => `/api/v1/runners/${runner.id}/claim`,
        token: asRunner,
        base: () => ({ max: 1, waitMs: 0, seq: 1 }),
        fields: [[['seq'], 'int4'], [['max'], 'number'], [['waitMs'], 'number']],
      },
      { name: 'job start', method: 'POST', path: () => `/api/v1/jobs/${job.id}/start`, token: asRunner, base: () => ({ attempt: job.attempt }), fields: [[['attempt'], 'int4']] },
      {
        name: 'log post',
        method: 'POST',
        path: () => `/api/v1/jobs/${job.id}/logs`,
        token: asRunner,
        base: () => ({ attempt: job.attempt, seq: 1, lines: [{ t: Date.now(), s: 'o', m: 'hello' }] }),
        fields: [[['lines', 0, 'm'], 'string'], [['lines', 0, 't'], 'number'], [['seq'], 'int4'], [['attempt'], 'int4']],
      },
      {
        name: 'result',
        method: 'POST',
        path: () => `/api/v1/jobs/${job.id}/result`,
        token: asRunner,
        base: () => ({ attempt: job.attempt, exitCode: 0, output: { ok: true }, error: null, durationMs: 5 }),
        fields: [[['output'], 'json'], [['error'], 'string'], [['exitCode'], 'int4'], [['durationMs'], 'number'], [['attempt'], 'int4']],
      },
    ];

    // One test per endpoint, each walking its fields; the names are known before `before` runs.
    const names = ['submit', 'submit (commands)', 'batch', 'pools apply', 'pools apply (list)', 'pools put', 'tokens create', 'register', 'heartbeat', 'claim', 'job start', 'log post', 'result'];
    for (const name of names) {
      test(name, async () => {
        const ep = endpoints().find((e) => e.name === name)!;
        // the base body itself is fine (so each refusal below is the bad field's)
        for (const [path, kind, ...extra] of ep.fields) {
          for (const bad of [...BAD[kind], ...extra]) {
            const before = await storeSnapshot(t.server.db);
            const body = rawBody(ep.base(), path, bad.raw);
            const r = await t.api(ep.method, ep.path(), undefined, { token: ep.token(), raw: body });
            const field = formatPath(path);
            const label = `${ep.method} ${name}: ${field} = ${bad.what}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`;
            assert.equal(r.status, 400, label);
            assert.equal(r.body.error.code, 'invalid', label);
            const named = r.body.error.field as string;
            assert.ok(named === field || named.startsWith(`${field}[`) || named.startsWith(`${field}.`), label);
            assert.doesNotMatch(JSON.stringify(r.body), /Maximum call stack|at .*\.(ts|js):\d+/, label);
            assert.deepEqual(await storeSnapshot(t.server.db), before, `${label}: the store changed`);
          }
        }
      });
    }

    test('the base bodies are accepted (so the refusals above are the fields)', async () => {
      const ok = async (method: string, path: string, body: unknown, token = t.token) => {
        const r = await t.api(method, path, body, { token });
        assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
      };
      await ok('POST', '/api/v1/jobs', { pool: 'iv', command: 'true', payload: { a: [1, 'x'] }, env: { FOO: 'bar' }, labels: ['a'], idempotencyKey: randomUUID(), timeout: '5m', maxAttempts: 2 });
      await ok('POST', '/api/v1/pools', { name: 'p-ok', labels: ['x'], setup: ['true'], env: { FOO: 'x' }, jobTimeout: '1h', startTimeout: '1m', maxRunners: 0 });
      await ok('POST', '/api/v1/tokens', { pool: 'iv', description: 'fine', expiresIn: '365d' });
      await ok('POST', `/api/v1/jobs/${job.id}/logs`, { attempt: job.attempt, seq: 1, lines: [{ t: Date.now(), s: 'o', m: 'hello 😀' }] }, runner.credential);
      await ok('POST', `/api/v1/runners/${runner.id}/heartbeat`, { version: 'v', jobs: [{ id: job.id, attempt: job.attempt }] }, runner.credential);
    });

    test('query strings and path parameters: out of range or NUL is a 400 naming it', async () => {
      const cases: [string, string, string][] = [
        ['GET', `/api/v1/jobs/${job.id}/logs?after=1e15`, 'after'],
        ['GET', `/api/v1/jobs/${job.id}/logs?after=99999999999`, 'after'],
        ['GET', '/api/v1/jobs?before=99999999999999999999', 'before'],
        ['GET', '/api/v1/events?subject=a%00b', 'subject'],
        ['GET', '/api/v1/events?before=1e300', 'before'],
        ['DELETE', '/api/v1/tokens/tok_%00', 'id'],
        ['GET', '/api/v1/artifacts/a%00b', 'ref'],
      ];
      for (const [method, path, field] of cases) {
        const before = await storeSnapshot(t.server.db);
        const r = await t.api(method, path);
        assert.equal(r.status, 400, `${method} ${path}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.field, field, `${method} ${path}`);
        assert.deepEqual(await storeSnapshot(t.server.db), before);
      }
    });
  });
}

describe('the config file shares the rules (runyard.yaml, env overrides)', () => {
  /** The problems loadConfig reports for `overrides`, each "field: message". */
  function problems(overrides: Record<string, unknown>): string[] {
    try {
      loadConfig({ env: {}, overrides });
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      return err.problems;
    }
    assert.fail(`accepted: ${JSON.stringify(overrides)}`);
  }
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ pools: [{ name: 'a', labels: ['x\u0000'] }] }, /^pools\[0\]\.labels\[0\]: must not contain NUL/],
    [{ pools: [{ name: 'a', setup: ['echo \ud800'] }] }, /^pools\[0\]\.setup\[0\]: must not contain lone surrogates/],
    [{ pools: [{ name: 'a', env: { A: 'x\u0000' } }] }, /^pools\[0\]\.env\.A: must not contain NUL/],
    [{ pools: [{ name: 'a', jobTimeout: 1e308 }] }, /^pools\[0\]\.jobTimeout: must be at most/],
    [{ pools: [{ name: 'a', jobTimeout: 0 }] }, /^pools\[0\]\.jobTimeout: must be positive/],
    [{ pools: [{ name: 'a', startTimeout: '9999999999999d' }] }, /^pools\[0\]\.startTimeout: must be at most/],
    [{ pools: [{ name: 'a', labels: Array.from({ length: 65 }, (_, i) => `l${i}`) }] }, /^pools\[0\]\.labels: at most 64 labels/],
    [{ scheduler: { tick: 1e19 } }, /^scheduler\.tick: must be at most/],
    [{ runner: { heartbeatInterval: 0 } }, /^runner\.heartbeatInterval: must be positive/],
    [{ store: { url: 'postgres://x\u0000' } }, /^store\.url: must not contain NUL/],
    [{ github: { repositories: ['acme/widgets/../../../orgs/evil-org'] } }, /^github\.repositories\[0\]: must be a GitHub repository/],
  ];
  for (const [overrides, expected] of cases)
    test(`${JSON.stringify(overrides).slice(0, 90)}`, () => {
      const found = problems(overrides);
      assert.ok(found.some((p) => expected.test(p)), found.join('\n'));
    });
});

describe('jsonProblem (the rule payloads, outputs and the agent share)', () => {
  test('walks a value nested a million deep without recursion; strings checked unless told not to', () => {
    let v: unknown = [];
    for (let i = 0; i < 1_000_000; i++) v = [v];
    assert.match(jsonProblem(v)!.message, /nested more than 64 levels deep/);
    assert.deepEqual(jsonProblem({ a: ['x\u0000'] })?.path, ['a', 0]);
    assert.equal(jsonProblem({ a: ['x\u0000'] }, { strings: false }), undefined);
    assert.match(jsonProblem({ big: 'x'.repeat(600 * 1024) })!.message, /exceeds 512 KiB/);
    assert.equal(jsonProblem({ ok: [1, 'two', null, true, { three: 3 }] }), undefined);
  });
});

describe('a real agent keeps what a job prints or outputs within the rules', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ loops: false });
  });
  after(async () => {
    await killAllAgents();
    await t?.close();
  });

  test('output nested 100,000 deep is refused with a reason (no stack overflow, no stuck job); NUL and lone surrogates in logs and output become U+FFFD', async () => {
    const token = await poolWithToken(t, { name: 'shapes', maxJobsPerRunner: 2 });
    const agent = startAgent({ server: t.url, token });
    const deepJob = await submit(t, { pool: 'shapes', command: `node -e 'process.stdout.write("[".repeat(${DEEP}) + "]".repeat(${DEEP}))' > "$RUNYARD_OUTPUT"` });
    const oddJob = await submit(t, { pool: 'shapes', command: `printf 'a\\000b\\n'; node -e 'require("fs").writeFileSync(process.env.RUNYARD_OUTPUT, JSON.stringify({ k: "x\\u0000\\ud800y" }))'` });
    const deepDone = await waitForJob(t, deepJob.id, undefined, 60_000);
    // as for output that is not JSON: the job's own exit code stands, the output is refused with a reason
    assert.equal(deepDone.state, 'succeeded');
    assert.match(deepDone.error, /RUNYARD_OUTPUT is nested more than 64 levels deep/);
    assert.equal(deepDone.output, null);
    const oddDone = await waitForJob(t, oddJob.id, undefined, 60_000);
    assert.equal(oddDone.state, 'succeeded', oddDone.error);
    assert.deepEqual(oddDone.output, { k: 'x\ufffd\ufffdy' });
    assert.ok((await allLogs(t, oddJob.id)).some((l) => l.m === 'a\ufffdb'));
    assert.equal(agent.child.exitCode, null, `the agent is alive:\n${agent.stderr.slice(-2000)}`);
  });
});
