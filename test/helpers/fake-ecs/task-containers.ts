/*
 * The fake ECS's compute: each task is a podman container (Docker-compatible API) of its task
 * definition's image, host networking so the agent inside reaches a server on 127.0.0.1. One
 * engine event stream tells the fake when a container ends; a slow inspect poll backs it up.
 */
import { createInterface } from 'node:readline';
import Docker from 'dockerode';

export const LABEL_FAKE = 'fake-ecs.instance';
export const LABEL_TASK = 'fake-ecs.task';

export interface StartedContainer {
  id: string;
}

export class TaskContainers {
  private docker: Docker;
  private ended = new Map<string, (exitCode: number) => void>();
  private abort = new AbortController();
  private poll: NodeJS.Timeout;

  constructor(
    socketPath: string,
    /** labels every container, so the tests can assert none is left */
    readonly fakeId: string,
  ) {
    this.docker = new Docker({ socketPath });
    void this.listen();
    this.poll = setInterval(() => void this.check(), 2_000);
    this.poll.unref();
  }

  /** Does the engine have the image? (ECS would pull it; here nothing can be pulled.) */
  async hasImage(image: string): Promise<boolean> {
    try {
      await this.docker.getImage(image).inspect();
      return true;
    } catch {
      return false;
    }
  }

  async start(taskId: string, taskArn: string, image: string, env: Record<string, string>, onEnd: (exitCode: number) => void): Promise<StartedContainer> {
    const c = await this.docker.createContainer({
      name: `fake-ecs-${taskId}`,
      Image: image,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      Labels: { [LABEL_FAKE]: this.fakeId, [LABEL_TASK]: taskArn },
      HostConfig: {
        NetworkMode: 'host',
        Init: true,
        Ulimits: [
          { Name: 'nofile', Soft: 20000, Hard: 20000 },
          { Name: 'nproc', Soft: 1000, Hard: 1000 },
        ],
      },
      StopSignal: 'SIGTERM',
    });
    this.ended.set(c.id, onEnd);
    try {
      await c.start();
    } catch (err) {
      this.ended.delete(c.id);
      await c.remove({ force: true }).catch(() => {});
      throw err;
    }
    return { id: c.id };
  }

  /** SIGTERM, SIGKILL after `timeoutSec` (ECS's stopTimeout); the end is reported through onEnd. */
  async stop(id: string, timeoutSec: number): Promise<void> {
    await this.docker
      .getContainer(id)
      .stop({ t: timeoutSec })
      .catch(() => {});
    await this.check(id);
  }

  async kill(id: string): Promise<void> {
    await this.docker
      .getContainer(id)
      .kill({ signal: 'SIGKILL' })
      .catch(() => {});
    await this.check(id);
  }

  /** Inspects one container (or every one still running) and reports those that ended. */
  private async check(only?: string): Promise<void> {
    for (const id of only ? [only] : [...this.ended.keys()]) {
      const onEnd = this.ended.get(id);
      if (!onEnd) continue;
      let code: number | undefined;
      try {
        const info = await this.docker.getContainer(id).inspect();
        if (!info.State.Running && info.State.Status !== 'created') code = info.State.ExitCode;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) code = 137;
      }
      if (code === undefined || !this.ended.has(id)) continue;
      this.ended.delete(id);
      await this.docker
        .getContainer(id)
        .remove({ force: true, v: true })
        .catch(() => {});
      onEnd(code);
    }
  }

  private async listen() {
    while (!this.abort.signal.aborted) {
      try {
        const stream = (await this.docker.getEvents({ filters: { type: ['container'], label: [`${LABEL_FAKE}=${this.fakeId}`] }, abortSignal: this.abort.signal })) as NodeJS.ReadableStream;
        for await (const line of createInterface({ input: stream as NodeJS.ReadableStream & AsyncIterable<Buffer>, crlfDelay: Infinity })) {
          try {
            const ev = JSON.parse(line) as { Action?: string; id?: string; Actor?: { ID?: string } };
            const cid = ev.Actor?.ID ?? ev.id;
            if (cid && ['died', 'die', 'stop', 'kill', 'oom', 'remove', 'cleanup'].includes(ev.Action ?? '')) void this.check(cid);
          } catch {
            // not an event line
          }
        }
      } catch {
        // stream cut: the poll covers the gap
      }
      if (!this.abort.signal.aborted) await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** Containers of this fake the engine still has (the tests assert none is left). */
  async leftovers(): Promise<string[]> {
    const list = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_FAKE}=${this.fakeId}`] } });
    return list.map((c) => c.Id);
  }

  /** Removes every container of this fake (the tasks' end is still reported). */
  async close(): Promise<void> {
    // SIGKILL first: a stop still waiting out its stopTimeout (a spot interruption's task) must
    // not outlive the fake, and a forced remove alone can fail while that stop holds the container
    for (const id of await this.leftovers().catch(() => [])) {
      await this.docker.getContainer(id).kill({ signal: 'SIGKILL' }).catch(() => {});
      await this.docker.getContainer(id).remove({ force: true, v: true }).catch(() => {});
    }
    this.abort.abort();
    clearInterval(this.poll);
  }
}
