/*
 * Database outages (issue 13, holes 7 and 10). On a PostgreSQL cluster of this test's own
 * (never the machine's shared server): a connection killed between two statements fails that
 * call and never crashes the process; a lost database answers 503 with Retry-After and says the
 * store is unavailable; /healthz says the store is down; and a server restarted under load from
 * real agents survives, loses no acknowledged job and runs each job once.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createServer } from 'node:net';
import { openDb, openPostgres, type Db } from '../src/store/db.js';
import { migrate } from '../src/store/migrate.js';
import { StoreUnavailableError } from '../src/store/store-errors.js';
import { PrivatePostgres, postgresBinDir } from './helpers/private-pg.js';
import { ServerProcess, agentPids, freePort } from './helpers/process-server.js';
import { ADMIN_TOKEN, startTestServer, waitFor } from './helpers/server.js';
import { openSse } from './helpers/http.js';

const bin = postgresBinDir();

describe('database outages (a private PostgreSQL cluster)', () => {
  let cluster: PrivatePostgres;
  before(async () => {
    assert.ok(bin, 'PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin: apt-get install postgresql');
    cluster = await new PrivatePostgres(bin).init();
  });
  after(() => cluster?.destroy());

  const freshDb = () => cluster.createDatabase(`runyard_outage_${randomBytes(4).toString('hex')}`);

  /** Terminates the backend `pid` (57P01, as a restart does) and waits until it is gone. */
  async function terminate(pid: number) {
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    try {
      await admin.query('select pg_terminate_backend($1)', [pid]);
      await waitFor(`backend ${pid} gone`, async () => (await admin.query('select 1 from pg_stat_activity where pid = $1', [pid])).rowCount === 0);
    } finally {
      await admin.end();
    }
  }

  /** Lets the killed connection's socket events (FATAL 57P01, then close) reach the client. */
  const settle = () => new Promise((r) => setTimeout(r, 0)).then(() => new Promise((r) => setImmediate(r)));

  describe('a connection killed between two statements', () => {
    let db: Db;
    before(async () => {
      db = await openPostgres(await freshDb(), { max: 2 });
    });
    after(() => db?.close());

    test('inside transaction(): that call fails with StoreUnavailableError, the process lives, the pool recovers', async () => {
      await assert.rejects(
        db.transaction(async (tx) => {
          const [{ pid }] = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
          await terminate(pid);
          await settle();
          await tx.query('select 1');
        }),
        (err: unknown) => err instanceof StoreUnavailableError && err.status === 503 && /store \(database\) is unavailable/.test(err.message),
      );
      // the dead client was dropped from the pool: new calls get a fresh connection
      for (let i = 0; i < 4; i++) assert.deepEqual(await db.query('select 1 as ok'), [{ ok: 1 }]);
      assert.equal(await db.transaction(async (tx) => (await tx.query('select 2 as two'))[0]!.two), 2);
    });

    test('inside withSession() and openSession(): the same', async () => {
      await assert.rejects(
        db.withSession(async (s) => {
          const [{ pid }] = await s.query<{ pid: number }>('select pg_backend_pid() as pid');
          await terminate(pid);
          await settle();
          await s.query({ name: 'outage_probe', text: 'select 1 as ok' });
        }),
        StoreUnavailableError,
      );
      const session = await db.openSession();
      const [{ pid }] = await session.query<{ pid: number }>('select pg_backend_pid() as pid');
      await terminate(pid);
      await settle();
      await assert.rejects(session.query('select 1'), StoreUnavailableError);
      session.release();
      assert.deepEqual(await db.query({ name: 'outage_probe', text: 'select 1 as ok' }), [{ ok: 1 }]);
    });
  });

  test('the database stopped: the API answers 503 with Retry-After, /healthz says the store is down; back when it returns', async () => {
    const t = await startTestServer({ dbUrl: await freshDb(), loops: false });
    // counts the store's refusals, to know when the log follower below has met the outage
    let refusals = 0;
    const query = t.server.db.query.bind(t.server.db);
    t.server.db.query = ((sql: any, params?: unknown[]) => query(sql, params).catch((err) => Promise.reject((refusals++, err)))) as Db['query'];
    try {
      const queued = (await t.api('POST', '/api/v1/jobs', { command: 'true' })).body.job;
      const follower = await openSse(`${t.url}/api/v1/jobs/${queued.id}/logs?follow=1`, ADMIN_TOKEN);
      await cluster.stop();
      try {
        const res = await fetch(`${t.url}/api/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ command: 'true' }),
        });
        const body = await res.json();
        assert.equal(res.status, 503, JSON.stringify(body));
        assert.equal(res.headers.get('retry-after'), '2');
        assert.equal(body.error.code, 'unavailable');
        assert.match(body.error.message, /store \(database\) is unavailable/);
        const health = await fetch(`${t.url}/healthz`);
        const h = await health.json();
        assert.equal(health.status, 503);
        assert.equal(h.checks.store, 'down');
        assert.ok(health.headers.get('retry-after'));
        // every kind of call, not only submits
        for (const [method, path] of [['GET', '/api/v1/jobs'], ['GET', '/api/v1/pools'], ['POST', '/api/v1/tokens']] as const) {
          const r = await t.api(method, path, method === 'POST' ? { pool: 'local' } : undefined);
          assert.equal(r.status, 503, `${method} ${path}: ${JSON.stringify(r.body)}`);
        }
        const seen = refusals;
        await waitFor('the log follower to poll the stopped store twice', () => refusals >= seen + 2, 20_000);
      } finally {
        await cluster.start();
      }
      // the follower was not cut off: it reads on and sees the job end
      assert.equal((await t.api('POST', `/api/v1/jobs/${queued.id}/cancel`)).status, 200);
      const events = await follower.until('end', 20_000);
      assert.match(events[events.length - 1]!.data, /"state":"cancelled"/);
      follower.close();
      await waitFor('submits accepted again', async () => (await t.api('POST', '/api/v1/jobs', { command: 'true' })).status === 201, 30_000, 100);
      assert.equal((await t.api('GET', '/healthz', undefined, { token: null })).body.checks.store, 'up');
    } finally {
      await t.close();
    }
  });

  test('restarts and a crash under load (submits, logs, heartbeats of real agents): the server survives, no acknowledged job is lost, each runs once', { timeout: 300_000 }, async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'runyard-outage-'));
    const ran = join(dataDir, 'executions.txt');
    const LINES = 20;
    const yaml = [
      'scheduler: { tick: 1s }',
      'runner: { heartbeatInterval: 300ms }',
      'pools:',
      '  - { name: local, minIdle: 2, maxRunners: 2, maxJobsPerRunner: 4 }',
      '',
    ].join('\n');
    const server = new ServerProcess({ dbUrl: await freshDb(), dataDir, port: await freePort(), yaml });
    const statuses = new Map<number, number>();
    const acknowledged = new Set<number>();
    let stopLoad = false;
    let outage = false;
    let seenDuringOutage = 0;
    let failure = '';
    try {
      await server.start();
      await waitFor('two warm runners', async () => (await server.api('GET', '/api/v1/runners')).runners.filter((r: any) => r.state === 'idle').length === 2, 60_000, 100);
      // Each job appends its id to a file outside the agent (its execution count) and prints
      // lines the agent posts as logs.
      const command = `echo "$RUNYARD_JOB_ID" >> ${ran}; i=0; while [ $i -lt ${LINES} ]; do echo "line $i"; i=$((i+1)); sleep 0.01; done`;
      const submitter = async (worker: number) => {
        for (let n = 0; !stopLoad; n++) {
          const key = `w${worker}-${n}`;
          // A client retries a 503 with the same idempotency key: the submit may have committed.
          for (;;) {
            const res = await fetch(`${server.url}/api/v1/jobs`, {
              method: 'POST',
              headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
              body: JSON.stringify({ command, idempotencyKey: key }),
            }).catch((err) => {
              failure = `${err.message} ${err.cause?.code ?? err.cause?.message ?? ''}`;
              return undefined;
            });
            const status = res?.status ?? 0;
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
            const body = res ? await res.json().catch(() => undefined) : undefined;
            if (status === 503) {
              if (outage) seenDuringOutage++;
              assert.ok(res!.headers.get('retry-after'), 'a 503 carries Retry-After');
              assert.match(body?.error?.message ?? '', /unavailable/);
              await new Promise((r) => setTimeout(r, 50));
              continue;
            }
            assert.ok(status === 201 || status === 200, `submit answered ${status}: ${JSON.stringify(body) ?? failure}; server exit ${server.child!.exitCode}\n${server.output.slice(-4000)}`);
            acknowledged.add(body.job.id);
            break;
          }
          await new Promise((r) => setTimeout(r, 100)); // a steady stream, a little more than the runners keep up with
        }
      };
      const load = Promise.all([0, 1, 2, 3].map(submitter));
      for (let round = 1; round <= 3; round++) {
        const before = acknowledged.size;
        await waitFor(`jobs acknowledged before restart ${round}`, () => acknowledged.size >= before + 25, 60_000, 50);
        outage = true;
        seenDuringOutage = 0;
        // rounds 1 and 3 a restart (57P01 to every session), round 2 a crash (connections reset)
        await cluster.stop(round === 2 ? 'immediate' : 'fast');
        await waitFor(`clients see 503 during outage ${round}`, () => seenDuringOutage >= 3, 30_000, 20);
        const health = await fetch(`${server.url}/healthz`);
        assert.equal(health.status, 503);
        assert.equal((await health.json()).checks.store, 'down');
        await cluster.start();
        outage = false;
        assert.equal(server.child!.exitCode, null, `the server survived restart ${round}:\n${server.output.slice(-3000)}`);
      }
      await waitFor('more jobs acknowledged after the last restart', () => acknowledged.size >= 150, 60_000, 50);
      stopLoad = true;
      await load;

      const ids = [...acknowledged];
      await waitFor(
        `all ${ids.length} acknowledged jobs succeeded`,
        async () => (await server.api('GET', '/api/v1/jobs?state=succeeded&limit=1000')).jobs.length >= ids.length,
        180_000,
        250,
      );
      const jobs = (await server.api('GET', '/api/v1/jobs?limit=1000')).jobs as any[];
      const byId = new Map(jobs.map((j) => [j.id, j]));
      for (const id of ids) assert.equal(byId.get(id)?.state, 'succeeded', `job ${id}: ${JSON.stringify(byId.get(id))}`);
      assert.equal(jobs.length, ids.length, 'no job beyond the acknowledged ones (idempotent retries)');
      // each job ran exactly once, counted from outside the agent
      const counts = new Map<number, number>();
      for (const l of readFileSync(ran, 'utf8').split('\n').filter(Boolean)) counts.set(Number(l), (counts.get(Number(l)) ?? 0) + 1);
      for (const id of ids) assert.equal(counts.get(id), 1, `job ${id} ran ${counts.get(id) ?? 0} times`);
      // logs posted across the outages arrived, each line once
      for (const id of ids.slice(0, 60)) {
        const { lines } = await server.api('GET', `/api/v1/jobs/${id}/logs?limit=5000`);
        const out = lines.filter((l: any) => l.s === 'o').map((l: any) => l.m);
        assert.deepEqual(out, Array.from({ length: LINES }, (_, i) => `line ${i}`), `logs of job ${id}`);
      }

      t.diagnostic(`${ids.length} jobs acknowledged, answers ${JSON.stringify([...statuses])}`);
      assert.equal(server.child!.exitCode, null, 'the server process is alive');
      assert.ok((statuses.get(503) ?? 0) > 0, 'clients saw 503 during the outages');
      const other = [...statuses.keys()].filter((s) => s >= 500 && s !== 503);
      assert.deepEqual(other, [], `no 5xx but 503: ${JSON.stringify([...statuses])}`);
      assert.doesNotMatch(server.output, /unhandled error|Unhandled 'error' event|uncaughtException/i);
    } finally {
      stopLoad = true;
      await server.stop();
      for (const pid of agentPids(dataDir)) process.kill(pid, 'SIGKILL');
      if (existsSync(dataDir)) rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('migrate() on a stopped database fails with StoreUnavailableError, not a crash', async () => {
    const url = await freshDb();
    await cluster.stop();
    try {
      await assert.rejects(openPostgres(url, { connectionTimeoutMs: 2000 }).then(migrate), StoreUnavailableError);
    } finally {
      await cluster.start();
    }
  });
});

test('a closed embedded store (PGlite) is a store that is down too: StoreUnavailableError, not a 500', async () => {
  const db = await openDb({ url: 'memory://', dataDir: '' });
  await db.close();
  await assert.rejects(db.query('select 1'), StoreUnavailableError);
  await assert.rejects(db.transaction((tx) => tx.query('select 1')), StoreUnavailableError);
});

/*
 * A connection that dies in the very packet that makes it ready: PostgreSQL shutting down sends
 * ReadyForQuery and FATAL 57P01 back to back, and node-postgres parses both in one go. A client
 * handed out by the pool (a promise, resumed a microtask later) had no error listener in between.
 * This speaks just enough of PostgreSQL's wire protocol on loopback to send exactly that.
 */
function dyingPostgres(): Promise<{ url: string; close: () => Promise<void> }> {
  const msg = (type: string, body: Buffer) => {
    const head = Buffer.alloc(5);
    head.write(type, 0, 'latin1');
    head.writeInt32BE(body.length + 4, 1);
    return Buffer.concat([head, body]);
  };
  const int32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n);
    return b;
  };
  const authOk = msg('R', int32(0));
  const ready = msg('Z', Buffer.from('I'));
  const fatal = msg('E', Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0', 'latin1'));
  let connections = 0;
  const server = createServer((socket) => {
    const n = ++connections;
    let buf = Buffer.alloc(0);
    let started = false;
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!started) {
        if (buf.length < 4 || buf.length < buf.readInt32BE(0)) return;
        buf = buf.subarray(buf.readInt32BE(0));
        started = true;
        // the first connection serves the pool's opening `select 1`; every later one dies on arrival
        socket.write(n === 1 ? Buffer.concat([authOk, ready]) : Buffer.concat([authOk, ready, fatal]));
        if (n > 1) socket.end();
      }
      if (n === 1 && buf.length >= 5 && buf[0] === 0x51 /* Q */) {
        socket.end(Buffer.concat([msg('C', Buffer.from('SELECT 0\0')), ready]));
      }
    });
  });
  return new Promise((ok) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      ok({ url: `postgres://x@127.0.0.1:${port}/x`, close: () => new Promise<void>((done) => server.close(() => done())) });
    }),
  );
}

test('a connection that fails in the packet that made it ready fails its call, not the process', async () => {
  const fake = await dyingPostgres();
  const db = await openPostgres(fake.url, { max: 1 });
  try {
    for (let i = 0; i < 3; i++) {
      await assert.rejects(db.transaction((tx) => tx.query('select 1')), StoreUnavailableError);
      await assert.rejects(db.withSession((s) => s.query('select 1')), StoreUnavailableError);
    }
  } finally {
    await db.close().catch(() => {});
    await fake.close();
  }
});
