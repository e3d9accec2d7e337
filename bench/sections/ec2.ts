/*
 * 8. EC2 warm pool, on the fake EC2 endpoint (instances are podman containers): submit → the
 * job's first output line when its runner starts on a stopped instance of the warm pool
 * (ModifyInstanceAttribute + StartInstances: the container starts again) vs on a new instance
 * (RunInstances: the container is created, then started), and the reuse speed-up. Then a burst:
 * N jobs at once into an empty pool; the instances launched (RunInstances + StartInstances) are
 * counted against the demand.
 */
import { startPodman } from '../../test/helpers/podman.js';
import { FakeEc2 } from '../../test/helpers/fake-ec2/fake-ec2.js';
import { TEST_CREDENTIALS } from '../../test/helpers/aws/sigv4.js';
import { coldJob, stopRunner } from '../lib/coldjob.js';
import { waitFor } from '../lib/fleet.js';
import { startBenchServer } from '../lib/server.js';
import { fmt, median } from '../lib/stats.js';
import { runSection, targetAtLeast, targetAtMost, type Row } from '../lib/section.js';

const AMI = 'ami-0be0c4beec4beec40';

await runSection('ec2', '8. EC2 warm pool (fake EC2)', async ({ quick, log }) => {
  const iterations = Number(process.env.BENCH_EC2_RUNS ?? (quick ? 2 : 5));
  const burst = quick ? 4 : 6;
  process.env.AWS_ACCESS_KEY_ID = TEST_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDENTIALS.secretAccessKey;
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  const podman = await startPodman();
  const fake = await new FakeEc2({ dockerHost: podman.host, amis: { [AMI]: podman.image }, stopTimeoutSec: 10 }).start();
  const ec2 = (extra: Record<string, unknown>) => ({ region: 'us-east-1', endpoint: fake.url, imageId: AMI, instanceType: 't3.micro', pollInterval: '250ms', ...extra });
  const s = await startBenchServer({
    store: 'postgres',
    tag: 'ec2',
    config: {
      scheduler: { tick: '1s', stopGrace: '5s' },
      pools: [
        { name: 'ec2-new', provider: 'ec2', maxRunners: 1, idleTimeout: '1h', ec2: ec2({}) },
        { name: 'ec2-warm', provider: 'ec2', maxRunners: 1, idleTimeout: '1h', ec2: ec2({ warmPool: { stopped: 1 } }) },
        { name: 'ec2-burst', provider: 'ec2', maxRunners: 20, maxJobsPerRunner: 1, idleTimeout: '1h', ec2: ec2({}) },
      ],
    },
  });
  const ofPool = (pool: string) => fake.instances().filter((i) => i.tags.get('runyard:pool') === pool);
  const rows: Row[] = [];
  try {
    const one = async (pool: string) => {
      const c = await coldJob(s, pool);
      await stopRunner(s, c.runnerId);
      await waitFor(`${pool} instance released`, () => ofPool(pool).every((i) => i.state === 'stopped' || i.state === 'terminated'), 60_000, 50);
      await fake.settle();
      return c.firstOutput - c.t0;
    };
    const fresh: number[] = [];
    const warm: number[] = [];
    // the warm pool's first instance is launched, then stopped into the pool: not a warm sample
    log(`priming the warm pool: ${fmt(await one('ec2-warm'))} ms`);
    for (let i = 0; i < iterations; i++) {
      fresh.push(await one('ec2-new'));
      warm.push(await one('ec2-warm'));
      log(`iteration ${i + 1}: new instance ${fmt(fresh.at(-1)!)} ms, stopped instance ${fmt(warm.at(-1)!)} ms`);
    }
    const reused = ofPool('ec2-warm').length;
    const ratio = median(fresh) / median(warm);
    rows.push({ key: true, metric: 'submit → first output, new instance (RunInstances), p50', value: median(fresh), unit: 'ms', runs: fresh.map(Math.round) });
    rows.push({ key: true, metric: 'submit → first output, stopped warm instance (StartInstances), p50', value: median(warm), unit: 'ms', runs: warm.map(Math.round) });
    rows.push({ key: true, metric: 'reuse speed-up (new / warm, p50)', value: ratio, unit: '×', target: '>= 1', met: targetAtLeast(ratio, 1) });
    rows.push({ metric: 'instances the warm pool used for all its jobs', value: reused, unit: 'instances', target: '= 1', met: reused === 1 });

    const runsBefore = fake.calls.length;
    const t0 = Date.now();
    const ids: number[] = [];
    for (let i = 0; i < burst; i++) ids.push((await s.http.ok('POST', '/api/v1/jobs', { pool: 'ec2-burst', command: 'sleep 2; echo burst' })).job.id);
    await waitFor('burst done', async () => {
      const r = await s.server.db.query<{ n: number }>(`select count(*)::int as n from jobs where id = any($1::bigint[]) and state = 'succeeded'`, [ids]);
      return r[0]!.n === burst;
    }, 300_000, 200);
    const burstMs = Date.now() - t0;
    const launched = fake.calls.slice(runsBefore).filter((c) => (c.action === 'RunInstances' || c.action === 'StartInstances') && !c.error).length;
    const instances = ofPool('ec2-burst').length;
    rows.push({ key: true, metric: `burst of ${burst} jobs: instances launched`, value: instances, unit: 'instances', target: `<= ${burst}`, met: targetAtMost(instances, burst) });
    rows.push({ metric: `burst of ${burst} jobs: successful RunInstances/StartInstances calls`, value: launched, unit: 'calls', target: `<= ${burst}`, met: targetAtMost(launched, burst) });
    rows.push({ metric: `burst of ${burst} jobs: submit → all succeeded`, value: burstMs, unit: 'ms' });
    return {
      rows,
      notes: [
        `${iterations} alternating iterations per kind on the fake EC2 (query protocol, SigV4) whose instances are podman containers of ${podman.image}; the scheduler and the ec2 provider are the real ones, polling every 250 ms. A "new instance" is a container created and started; a "stopped instance" is the same container started again after ModifyInstanceAttribute gave it the new runner's user data. On real EC2 a new instance pays for its AMI's first boot (tens of seconds: EBS volume from the snapshot, cloud-init's per-instance stages) and a stopped one resumes with its disk warm; the fake has none of that: a podman container is created in a few hundred ms, and the warm path makes four calls (DescribeInstances for stopped ones, ModifyInstanceAttribute, StartInstances, CreateTags) against RunInstances' one. So on the fake the ratio is near 1 and says nothing about the seed's 10–20×; what this section does hold is that the warm pool serves every job from one instance and that a burst launches no more instances than it has jobs.`,
      ],
    };
  } finally {
    await s.close();
    await fake.close();
    await podman.close();
  }
});
