/*
 * The README's test command on a fresh machine (issue 13, hole 9): `npm test` runs
 * scripts/test-prereqs.sh first (npm's pretest), which installs what the tests need with apt-get
 * and starts PostgreSQL when it does not answer; `.ci/run` calls exactly `npm test`. The script
 * runs here against a sandbox PATH whose apt-get, dpkg-query and PostgreSQL tools are small
 * stand-ins that record what they were asked (the machine's own packages and server are never
 * touched), and once for real on this machine, where all is present.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const SCRIPT = join(ROOT, 'scripts/test-prereqs.sh');
const which = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
const BASH = which('bash');
const CHMOD = which('chmod');

/** A PATH holding only the basic tools the script uses, plus stand-ins written by the test. */
function sandbox(): { dir: string; bin: string; shim: (name: string, body: string) => void; run: (env?: Record<string, string>) => { status: number | null; stderr: string; ms: number }; log: () => string } {
  const dir = mkdtempSync(join(tmpdir(), 'runyard-prereqs-'));
  const bin = join(dir, 'bin');
  spawnSync('mkdir', ['-p', bin]);
  for (const tool of ['grep', 'awk', 'id', 'seq', 'sleep', 'cat']) {
    symlinkSync(which(tool), join(bin, tool));
  }
  const shim = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!${BASH}\nD=${dir}\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  const run = (env: Record<string, string> = {}) => {
    const started = performance.now();
    const r = spawnSync(BASH, [SCRIPT], { env: { PATH: bin, HOME: dir, RUNYARD_PG_START_TRIES: '4', ...env }, encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, stderr: r.stderr, ms: performance.now() - started };
  };
  const log = () => (existsSync(join(dir, 'calls.log')) ? readFileSync(join(dir, 'calls.log'), 'utf8') : '');
  return { dir, bin, shim, run, log };
}

/** A machine of this kind as it comes: no podman, runc, Chromium, unzip, AWS CLI v2, PostgreSQL stopped. */
function freshMachine(o: { aptWorks?: boolean; pgStarts?: boolean; pgInstalled?: boolean } = {}) {
  const s = sandbox();
  const { aptWorks = true, pgStarts = true, pgInstalled = true } = o;
  const pgCtl = `echo "pg_ctlcluster $*" >> $D/calls.log; ${pgStarts ? ': > $D/pg-up' : 'exit 0'}`;
  // apt-get install puts the packages' commands on PATH, and dpkg then lists them
  s.shim(
    'apt-get',
    `echo "apt-get $*" >> $D/calls.log
${aptWorks ? '' : 'exit 100'}
[ "$1" = install ] || exit 0
for p in "$@"; do
  case "$p" in
    podman|runc|chromium|unzip) printf '#!${BASH}\\nexit 0\\n' > ${s.bin}/$p; ${CHMOD} +x ${s.bin}/$p ;;
    postgresql) printf '#!${BASH}\\nD=%s\\n%s\\n' "$D" '${pgCtl.replace(/'/g, "'\\''")}' > ${s.bin}/pg_ctlcluster; ${CHMOD} +x ${s.bin}/pg_ctlcluster ;;
    -*) ;;
    *) echo "$p" >> $D/dpkg ;;
  esac
done`,
  );
  s.shim('dpkg-query', `grep -qx "\${@: -1}" $D/dpkg 2>/dev/null && echo "install ok installed"`);
  s.shim('pg_isready', `[ -e $D/pg-up ]`);
  s.shim('pg_lsclusters', `echo "15  main    5432 down   postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log"`);
  if (pgInstalled) s.shim('pg_ctlcluster', pgCtl);
  s.shim('moto_server', 'exit 0'); // pip-installed on machines of this kind
  return s;
}

test('a fresh machine: the missing packages are installed with apt-get and PostgreSQL is started; a second run does nothing', () => {
  const s = freshMachine({ pgInstalled: false });
  try {
    const first = s.run();
    assert.equal(first.status, 0, first.stderr);
    assert.match(s.log(), /^apt-get update -qq$/m);
    assert.match(s.log(), /^apt-get install -y -qq podman runc chromium unzip awscli postgresql$/m);
    assert.match(s.log(), /^pg_ctlcluster --skip-systemctl-redirect 15 main start$/m);
    assert.match(first.stderr, /installing podman runc chromium unzip awscli postgresql/);
    assert.match(first.stderr, /starting PostgreSQL 15\/main/);

    const calls = s.log();
    const second = s.run();
    assert.equal(second.status, 0, second.stderr);
    assert.equal(second.stderr, '', 'nothing to say when all is there');
    assert.equal(s.log(), calls, 'no apt-get, no pg_ctlcluster the second time');
  } finally {
    rmSync(s.dir, { recursive: true, force: true });
  }
});

test('what cannot be installed or started stops npm test with a message saying what to do', () => {
  const noApt = freshMachine({ aptWorks: false });
  const noPg = freshMachine({ pgStarts: false });
  try {
    const a = noApt.run();
    assert.equal(a.status, 1);
    assert.match(a.stderr, /could not install podman runc chromium unzip awscli: install them yourself \(apt-get install -y podman runc chromium unzip awscli\)/);
    const p = noPg.run();
    assert.equal(p.status, 1);
    assert.match(p.stderr, /PostgreSQL 15\/main did not start \(see \/var\/log\/postgresql\/postgresql-15-main\.log\)/);
    const elsewhere = noPg.run({ RUNYARD_TEST_PG_URL: 'postgres://postgres@127.0.0.1:1/postgres' });
    assert.equal(elsewhere.status, 1);
    assert.match(elsewhere.stderr, /RUNYARD_TEST_PG_URL does not answer/);
  } finally {
    rmSync(noApt.dir, { recursive: true, force: true });
    rmSync(noPg.dir, { recursive: true, force: true });
  }
});

test('npm test runs it first, .ci/run calls exactly npm test, and the README keeps its two commands', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  assert.equal(pkg.scripts.pretest, 'bash scripts/test-prereqs.sh');
  const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  assert.equal(ci[ci.length - 1], 'npm test');
  assert.ok(!ci.some((l) => /apt-get|pg_ctlcluster/.test(l)), '.ci/run installs nothing itself: npm test does');
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.match(readme, /^```sh\nnpm install && npx runyard up .*\nnpm test .*\n```/m);
});

test('on this machine: everything is there, so it passes quietly in well under a few seconds', () => {
  const r = spawnSync(BASH, [SCRIPT], { encoding: 'utf8', timeout: 120_000 });
  const started = performance.now();
  const again = spawnSync(BASH, [SCRIPT], { encoding: 'utf8', timeout: 60_000 });
  const ms = performance.now() - started;
  assert.equal(r.status, 0, r.stderr);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(again.stderr, '');
  assert.ok(ms < 5000, `took ${Math.round(ms)} ms`);
});
