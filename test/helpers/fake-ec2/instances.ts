/*
 * The fake's instances. Each one is a podman container of its AMI's image: RunInstances creates
 * and starts it (pending → running), StopInstances stops it and keeps its filesystem (stopping →
 * stopped), StartInstances starts the same container again, TerminateInstances removes it
 * (shutting-down → terminated). At every start the instance's boot folder is written anew from its
 * current user data (cloud-init.ts decides which scripts run at that boot), so user data changed
 * while stopped (ModifyInstanceAttribute) is what the next boot sees, as on EC2.
 */
import { mkdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import { BOOT_SH, POWEROFF_SH, bootScripts } from './cloud-init.js';
import { Ec2Error } from './xml.js';

export const STATE_CODES = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80 } as const;
export type StateName = keyof typeof STATE_CODES;

export interface Instance {
  id: string;
  reservationId: string;
  imageId: string;
  instanceType: string;
  subnetId: string;
  availabilityZone: string;
  launchTime: Date;
  state: StateName;
  stateReason?: { code: string; message: string };
  /** "Client.UserInitiatedShutdown: …" style text EC2 puts in `reason` */
  reason: string;
  tags: Map<string, string>;
  userData: string;
  clientToken: string;
  spot: boolean;
  shutdownBehavior: 'stop' | 'terminate';
  iamInstanceProfile?: string;
  securityGroups: string[];
  boots: number;
  containerId?: string;
  /** status checks, for DescribeInstanceStatus; tests impair them */
  impaired: boolean;
  /** an operation on the container under way: states move when it ends */
  busy?: Promise<void>;
}

export interface InstanceStoreOptions {
  docker: Docker;
  /** AMI id → local image */
  amis: Record<string, string>;
  dir: string;
  label: string;
  /** seconds a stop gives the OS to shut down before the engine kills it */
  stopTimeoutSec: number;
}

const ULIMITS = [
  { Name: 'nofile', Soft: 20000, Hard: 20000 },
  { Name: 'nproc', Soft: 1000, Hard: 1000 },
];

export const newId = (prefix: string) => `${prefix}-${randomBytes(9).toString('hex').slice(0, 17)}`;

export class InstanceStore {
  readonly all = new Map<string, Instance>();

  constructor(private opts: InstanceStoreOptions) {}

  get(id: string): Instance {
    if (!/^i-[0-9a-f]{8}([0-9a-f]{9})?$/.test(id)) throw new Ec2Error('InvalidInstanceID.Malformed', `Invalid id: "${id}"`);
    const i = this.all.get(id);
    if (!i) throw new Ec2Error('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
    return i;
  }

  private set(i: Instance, state: StateName, reason?: { code: string; message: string }) {
    i.state = state;
    if (reason) {
      i.stateReason = reason;
      const at = new Date().toISOString().replace(/\.\d+Z$/, ' GMT').replace('T', ' ');
      i.reason = reason.code === 'Client.UserInitiatedShutdown' ? `User initiated (${at})` : `${reason.message} (${at})`;
    } else if (state === 'running' || state === 'pending') {
      i.stateReason = undefined;
      i.reason = '';
    }
  }

  /** Runs `op` on the instance's container in the background; the next op waits for it. */
  private track(i: Instance, op: () => Promise<void>) {
    const prev = i.busy ?? Promise.resolve();
    const run = prev.then(op).catch((err) => {
      // the engine failed: the instance is lost, as hardware failure would leave it
      i.stateReason = { code: 'Server.InternalError', message: `Server.InternalError: ${(err as Error).message}` };
      i.state = 'terminated';
    });
    const tracked: Promise<void> = run.finally(() => {
      if (i.busy === tracked) i.busy = undefined;
    });
    i.busy = tracked;
  }

  private writeBoot(i: Instance) {
    const root = join(this.opts.dir, i.id);
    rmSync(join(root, 'boot'), { recursive: true, force: true });
    mkdirSync(join(root, 'boot'), { recursive: true });
    mkdirSync(join(root, 'bin'), { recursive: true });
    writeFileSync(join(root, 'boot.sh'), BOOT_SH);
    for (const name of ['poweroff', 'shutdown', 'halt']) {
      writeFileSync(join(root, 'bin', name), POWEROFF_SH);
      chmodSync(join(root, 'bin', name), 0o755);
    }
    // metadata the instance can read, like IMDS: its id and this boot's user data
    writeFileSync(join(root, 'instance-id'), i.id);
    writeFileSync(join(root, 'user-data'), i.userData);
    bootScripts(i.userData, i.boots).forEach((s, n) => writeFileSync(join(root, 'boot', `${String(n).padStart(3, '0')}-${s.name}`), s.body));
  }

  async launch(i: Instance): Promise<void> {
    const image = this.opts.amis[i.imageId];
    if (!image) throw new Ec2Error('InvalidAMIID.NotFound', `The image id '[${i.imageId}]' does not exist`);
    this.all.set(i.id, i);
    this.track(i, async () => {
      const root = join(this.opts.dir, i.id);
      mkdirSync(root, { recursive: true });
      const c = await this.opts.docker.createContainer({
        name: `fake-ec2-${i.id}`,
        Image: image,
        Entrypoint: ['/bin/sh', '/var/lib/cloud/fake/boot.sh'],
        Cmd: [],
        Labels: { [this.opts.label.split('=')[0]!]: this.opts.label.split('=')[1]!, 'fake-ec2.instance': i.id },
        HostConfig: { NetworkMode: 'host', Ulimits: ULIMITS, Binds: [`${root}:/var/lib/cloud/fake`] },
        StopSignal: 'SIGTERM',
        StopTimeout: this.opts.stopTimeoutSec,
      });
      i.containerId = c.id;
      await this.boot(i);
    });
  }

  private async boot(i: Instance) {
    i.boots += 1;
    this.writeBoot(i);
    await this.opts.docker.getContainer(i.containerId!).start();
    if (i.state === 'pending') this.set(i, 'running');
  }

  start(i: Instance): StateName {
    const prev = i.state;
    if (prev === 'running' || prev === 'pending') return prev;
    if (prev !== 'stopped') throw new Ec2Error('IncorrectInstanceState', `The instance '${i.id}' is not in a state from which it can be started.`);
    this.set(i, 'pending');
    this.track(i, () => this.boot(i));
    return prev;
  }

  stop(i: Instance, force: boolean, reason = { code: 'Client.UserInitiatedShutdown', message: 'Client.UserInitiatedShutdown: User initiated shutdown' }): StateName {
    const prev = i.state;
    if (prev === 'stopped' || prev === 'stopping') return prev;
    if (prev === 'terminated' || prev === 'shutting-down') throw new Ec2Error('IncorrectInstanceState', `This instance '${i.id}' is not in a state from which it can be stopped.`);
    if (i.spot && reason.code === 'Client.UserInitiatedShutdown')
      throw new Ec2Error('UnsupportedOperation', `You can't stop the Spot Instance '${i.id}' because it is associated with a one-time Spot Instance request. You can only stop Spot Instances associated with persistent Spot Instance requests.`);
    this.set(i, 'stopping', reason);
    this.track(i, async () => {
      await this.opts.docker.getContainer(i.containerId!).stop({ t: force ? 0 : this.opts.stopTimeoutSec }).catch((err) => {
        if ((err as { statusCode?: number }).statusCode !== 304) throw err;
      });
      this.set(i, 'stopped');
    });
    return prev;
  }

  /** `hard`: the machine loses power at once (a spot reclaim here), no OS shutdown. */
  terminate(i: Instance, reason = { code: 'Client.UserInitiatedShutdown', message: 'Client.UserInitiatedShutdown: User initiated shutdown' }, hard = false): StateName {
    const prev = i.state;
    if (prev === 'terminated' || prev === 'shutting-down') return prev;
    this.set(i, 'shutting-down', reason);
    this.track(i, async () => {
      if (i.containerId && hard) await this.opts.docker.getContainer(i.containerId).kill({ signal: 'SIGKILL' }).catch(() => {});
      if (i.containerId) await this.opts.docker.getContainer(i.containerId).remove({ force: true, v: true }).catch((err) => {
        if ((err as { statusCode?: number }).statusCode !== 404) throw err;
      });
      rmSync(join(this.opts.dir, i.id), { recursive: true, force: true });
      this.set(i, 'terminated');
    });
    return prev;
  }

  /**
   * Brings states up to date with the containers: an instance whose OS shut itself down
   * (`poweroff`, or its last process ended) is stopped or terminated as its shutdown behaviour says.
   */
  async sync(): Promise<void> {
    const live = [...this.all.values()].filter((i) => i.state === 'running' && !i.busy && i.containerId);
    if (live.length === 0) return;
    const list = await this.opts.docker.listContainers({ all: true, filters: { label: [this.opts.label] } });
    const running = new Set(list.filter((c) => c.State === 'running').map((c) => c.Id));
    for (const i of live) {
      if (running.has(i.containerId!) || i.state !== 'running' || i.busy) continue;
      const reason = { code: 'Client.InstanceInitiatedShutdown', message: 'Client.InstanceInitiatedShutdown: Instance initiated shutdown' };
      if (i.shutdownBehavior === 'terminate') this.terminate(i, reason);
      else {
        this.set(i, 'stopped', reason);
      }
    }
  }

  /** Waits for every container operation under way. */
  async settle(): Promise<void> {
    while ([...this.all.values()].some((i) => i.busy)) await Promise.all([...this.all.values()].map((i) => i.busy));
  }

  async removeAll(): Promise<void> {
    await this.settle();
    const list = await this.opts.docker.listContainers({ all: true, filters: { label: [this.opts.label] } });
    await Promise.all(list.map((c) => this.opts.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => {})));
  }
}
