/*
 * runyard.yaml + RUNYARD_* env + CLI overrides, validated once: defaults, overrides in order,
 * durations, and bad input that lists every problem by its field.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, formatPath, loadConfig } from '../src/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'runyard-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let fileSeq = 0;
function yamlFile(text: string): string {
  const file = join(dir, `runyard-${++fileSeq}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** The problems of a config that must fail. */
function problems(opts: Parameters<typeof loadConfig>[0]): string[] {
  try {
    loadConfig({ env: {}, ...opts });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.match(err.message, /^invalid configuration:\n {2}- /);
    return err.problems;
  }
  assert.fail('config was accepted');
}

describe('config defaults', () => {
  test('no file and no env: a working single-machine setup with the default local pool', () => {
    const c = loadConfig({ env: {} });
    assert.equal(c.port, 8080);
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.dataDir, '.runyard');
    assert.equal(c.store.url, undefined, 'embedded PGlite unless a URL is given');
    assert.equal(c.scheduler.tick, 10_000);
    assert.equal(c.scheduler.offlineAfter, 60_000);
    assert.equal(c.scheduler.stuckAfter, 300_000);
    assert.deepEqual(c.runner, { heartbeatInterval: 30_000, pingInterval: 10_000 });
    assert.equal(c.pools.length, 1);
    const local = c.pools[0]!;
    assert.equal(local.name, 'local');
    assert.equal(local.provider, 'process');
    assert.equal(local.maxJobsPerRunner, 2);
    assert.equal(local.maxRunners, 4);
    assert.equal(local.minIdle, 0);
    assert.equal(local.idleTimeout, 300_000);
    assert.equal(local.maxLifetime, 86_400_000);
    assert.equal(local.jobTimeout, 3_600_000);
    assert.equal(local.ephemeral, false);
    assert.deepEqual(local.labels, []);
    assert.deepEqual(local.env, {});
    assert.deepEqual(Object.keys(c.classSizes).sort(), ['large', 'medium', 'small']);
  });

  test('pools given in the file replace the default local pool; pool fields get their defaults', () => {
    const c = loadConfig({ env: {}, file: yamlFile('pools:\n  - name: gpu\n    maxRunners: 2\n') });
    assert.deepEqual(c.pools.map((p) => p.name), ['gpu']);
    assert.equal(c.pools[0]!.maxJobsPerRunner, 1);
    assert.equal(c.pools[0]!.idleTimeout, 300_000);
  });

  test('an empty file is the defaults', () => {
    assert.equal(loadConfig({ env: {}, file: yamlFile('') }).pools[0]!.name, 'local');
  });
});

describe('config overrides', () => {
  test('RUNYARD_PORT, RUNYARD_DATABASE_URL and RUNYARD_SCHEDULER_TICK override the file', () => {
    const file = yamlFile('port: 8000\nstore:\n  url: postgres://file/db\nscheduler:\n  tick: 1m\n  stuckAfter: 10m\n');
    const c = loadConfig({ file, env: { RUNYARD_PORT: '9090', RUNYARD_DATABASE_URL: 'postgres://env/db', RUNYARD_SCHEDULER_TICK: '5s' } });
    assert.equal(c.port, 9090);
    assert.equal(c.store.url, 'postgres://env/db');
    assert.equal(c.scheduler.tick, 5000);
    assert.equal(c.scheduler.stuckAfter, 600_000, 'keys not overridden keep the file value');
  });

  test('every key has its RUNYARD_<PATH> variable; values are typed by the schema', () => {
    const c = loadConfig({
      env: {
        RUNYARD_STORE_URL: 'postgres://u:p@h/db',
        RUNYARD_SCHEDULER_TICK: '250',
        RUNYARD_SCHEDULER_OFFLINE_AFTER: '2m',
        RUNYARD_RUNNER_HEARTBEAT_INTERVAL: '15s',
        RUNYARD_LIMITS_MAX_BATCH: '50',
        RUNYARD_LOG_LEVEL: 'warn',
        RUNYARD_HOST: '0.0.0.0',
        RUNYARD_DATA_DIR: '/var/lib/runyard',
        // looks like a number, but is a secret: stays text
        RUNYARD_ADMIN_TOKEN: '12345678901234567890',
        RUNYARD_POOLS: '[{name: ci, maxRunners: 3}]',
        RUNYARD_UNRELATED: 'ignored',
        HOME: '/root',
      },
    });
    assert.equal(c.store.url, 'postgres://u:p@h/db');
    assert.equal(c.scheduler.tick, 250);
    assert.equal(c.scheduler.offlineAfter, 120_000);
    assert.equal(c.runner.heartbeatInterval, 15_000);
    assert.equal(c.limits.maxBatch, 50);
    assert.equal(c.logLevel, 'warn');
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.dataDir, '/var/lib/runyard');
    assert.equal(c.adminToken, '12345678901234567890');
    assert.deepEqual(c.pools.map((p) => [p.name, p.maxRunners]), [['ci', 3]]);
  });

  test('a list is one key: RUNYARD_POOLS sets all pools; its items have no variables of their own', () => {
    assert.deepEqual(loadConfig({ env: { RUNYARD_POOLS: '[{name: a}, {name: b, maxRunners: 1}]' } }).pools.map((p) => p.name), ['a', 'b']);
    assert.deepEqual(loadConfig({ env: { RUNYARD_POOLS_NAME: 'x' } }).pools.map((p) => p.name), ['local']);
    assert.deepEqual(problems({ env: { RUNYARD_POOLS: '[{name: Bad}]' } }), ['pools[0].name: must be a slug: 1-63 lowercase letters, digits and dashes']);
  });

  test('CLI overrides win over env and file', () => {
    const c = loadConfig({ file: yamlFile('port: 8000\n'), env: { RUNYARD_PORT: '9000' }, overrides: { port: 7000, host: undefined } });
    assert.equal(c.port, 7000);
    assert.equal(c.host, '127.0.0.1', 'an undefined override changes nothing');
  });

  test('a bad env value is reported under its field', () => {
    assert.deepEqual(problems({ env: { RUNYARD_PORT: 'eighty' } }).map((p) => p.split(':')[0]), ['port']);
    assert.match(problems({ env: { RUNYARD_SCHEDULER_TICK: 'soon' } }).join('\n'), /^scheduler\.tick: invalid duration "soon"/);
  });
});

describe('config durations', () => {
  const tick = (v: unknown) => loadConfig({ env: {}, overrides: { scheduler: { tick: v } } }).scheduler.tick;
  test('30s, 5m, 1h, 1h30m, 250ms, 1.5s and plain milliseconds', () => {
    assert.equal(tick('30s'), 30_000);
    assert.equal(tick('5m'), 300_000);
    assert.equal(tick('1h'), 3_600_000);
    assert.equal(tick('1h30m'), 5_400_000);
    assert.equal(tick('250ms'), 250);
    assert.equal(tick('1.5s'), 1500);
    assert.equal(tick(1500), 1500);
    assert.equal(tick('1500'), 1500);
    assert.equal(tick('2d'), 172_800_000);
  });

  test('malformed durations name the field and the value', () => {
    for (const bad of ['5 minutes', '-1s', '', 'm5', '5x', -5, '1h 30m']) {
      const p = problems({ overrides: { scheduler: { tick: bad } } });
      assert.equal(p.length, 1, `${JSON.stringify(bad)}: ${p.join('; ')}`);
      assert.match(p[0]!, /^scheduler\.tick: /, String(bad));
    }
    const p = problems({ file: yamlFile('pools:\n  - name: a\n    idleTimeout: 5 minutes\n') });
    assert.deepEqual(p, ['pools[0].idleTimeout: invalid duration "5 minutes": use 30s, 5m, 1h or milliseconds']);
  });
});

describe('bad config', () => {
  test('lists every problem, each naming its field', () => {
    const file = yamlFile(
      [
        'port: 70000',
        'logLevel: loud',
        'adminToken: short',
        'colour: blue',
        'scheduler:',
        '  tick: soon',
        'limits:',
        '  maxBatch: 0',
        'pools:',
        '  - name: ok',
        '  - name: Bad_Name',
        '    maxRunners: -1',
        '    provider: vm',
        '    maxJobsPerRunner: 1.5',
        '    env: { "1BAD": x }',
        '    size: huge',
        '  - name: ok',
        '    class: gigantic',
        '  - name: box',
        '    provider: container',
      ].join('\n'),
    );
    const p = problems({ file });
    const fields = p.map((x) => x.slice(0, x.indexOf(':')));
    for (const field of [
      'port',
      'logLevel',
      'adminToken',
      'scheduler.tick',
      'limits.maxBatch',
      'pools[1].name',
      'pools[1].maxRunners',
      'pools[1].provider',
      'pools[1].maxJobsPerRunner',
      'pools[1].env.1BAD',
    ])
      assert.ok(fields.includes(field), `${field} missing from:\n${p.join('\n')}`);
    assert.ok(p.some((x) => x.includes('colour')), 'unknown top-level key named');
    assert.ok(p.some((x) => x.startsWith('pools[1]') && x.includes('size')), 'unknown pool key named');
    assert.ok(p.length >= 12, `every problem listed (${p.length})`);
  });

  test('cross-field problems: duplicate names, unknown class size, minIdle > maxRunners, image needed', () => {
    const p = problems({
      file: yamlFile(
        'pools:\n  - name: a\n  - name: a\n    class: gigantic\n  - name: b\n    minIdle: 5\n    maxRunners: 2\n  - name: c\n    provider: container\n',
      ),
    });
    assert.deepEqual(p.sort(), [
      'pools[1].class: unknown class size gigantic; known: small, medium, large',
      'pools[1].name: duplicate pool name a',
      'pools[2].minIdle: minIdle (5) exceeds maxRunners (2)',
      'pools[3].image: provider container needs an image',
    ]);
  });

  test('unreadable, missing, non-YAML and non-mapping files are reported with the file name', () => {
    const missing = join(dir, 'nope.yaml');
    assert.deepEqual(problems({ file: missing }), [`${missing}: cannot read config file (ENOENT)`]);
    assert.deepEqual(problems({ file: dir }), [`${dir}: cannot read config file (EISDIR)`]);
    if (process.getuid?.() !== 0) {
      // root reads any file, so this case only shows for other users
      const locked = yamlFile('port: 1\n');
      chmodSync(locked, 0);
      assert.deepEqual(problems({ file: locked }), [`${locked}: cannot read config file (EACCES)`]);
    }
    const broken = yamlFile('port: [8080\npools: {');
    const [p] = problems({ file: broken });
    assert.match(p!, new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not valid YAML: `));
    assert.deepEqual(problems({ file: yamlFile('- a\n- b\n') }), [`${join(dir, `runyard-${fileSeq}.yaml`)}: must be a YAML mapping`]);
    assert.deepEqual(problems({ file: yamlFile('just a string\n') }), [`${join(dir, `runyard-${fileSeq}.yaml`)}: must be a YAML mapping`]);
  });

  test('formatPath turns zod paths into the names users write', () => {
    assert.equal(formatPath(['pools', 0, 'maxRunners']), 'pools[0].maxRunners');
    assert.equal(formatPath(['scheduler', 'tick']), 'scheduler.tick');
    assert.equal(formatPath([]), '(root)');
  });
});
