/**
 * The work dir: a fresh directory per job attempt, and one for the pool's setup commands.
 *
 *   <work-dir>/setup/                 cwd of `setup` (RUNYARD_SETUP_DIR for jobs)
 *   <work-dir>/<job>-<attempt>/work/  the job's cwd (RUNYARD_WORKDIR), distribution extracted here
 *   <work-dir>/<job>-<attempt>/payload.json, output.json   (RUNYARD_PAYLOAD, RUNYARD_OUTPUT)
 *
 * Payload and output sit beside the job's cwd, not in it, so they never collide with the
 * distribution's files. Each job dir also records its process group (`pgid`): an agent that
 * was killed outright leaves its jobs running, and the next agent on this work dir kills them
 * before anything else (the server hands those jobs out again). Only directories the agent made
 * are ever removed, and the work dir is locked so two agents never share it.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { lockDir, removeIfEmpty, unlockDir } from './state-dir.js';

export interface JobDir {
  root: string;
  workdir: string;
  payloadPath: string;
  outputPath: string;
}

const JOB_DIR = /^\d+-\d+$/;

export class Workspace {
  readonly root: string;
  private readonly live = new Set<string>();
  private locked = false;

  constructor(root: string) {
    this.root = resolve(root);
  }

  get setupDir(): string {
    return join(this.root, 'setup');
  }

  /** Locks the work dir; kills and clears the jobs a killed predecessor left behind. */
  prepare(): { killedGroups: number } {
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    lockDir(this.root, 'work dir', '--work-dir');
    this.locked = true;
    let killedGroups = 0;
    for (const name of readdirSync(this.root)) {
      if (!JOB_DIR.test(name)) continue;
      const pgid = readPgid(join(this.root, name, 'pgid'));
      if (pgid > 1) {
        try {
          process.kill(-pgid, 'SIGKILL');
          killedGroups++;
        } catch {
          // already gone
        }
      }
      rmSync(join(this.root, name), { recursive: true, force: true });
    }
    mkdirSync(this.setupDir, { recursive: true, mode: 0o700 });
    return { killedGroups };
  }

  /** Records a job's process group so a successor can kill it if this agent dies. */
  recordGroup(dir: JobDir, pgid: number): void {
    writeFileSync(join(dir.root, 'pgid'), `${pgid}\n`);
  }

  createJobDir(jobId: number, attempt: number, payload: unknown): JobDir {
    const root = join(this.root, `${jobId}-${attempt}`);
    rmSync(root, { recursive: true, force: true });
    const dir: JobDir = { root, workdir: join(root, 'work'), payloadPath: join(root, 'payload.json'), outputPath: join(root, 'output.json') };
    mkdirSync(dir.workdir, { recursive: true, mode: 0o700 });
    writeFileSync(dir.payloadPath, JSON.stringify(payload ?? null), { mode: 0o600 });
    this.live.add(root);
    return dir;
  }

  removeJobDir(dir: JobDir): void {
    rmSync(dir.root, { recursive: true, force: true });
    this.live.delete(dir.root);
  }

  /** `delete`: every job dir, the setup dir, and the work dir itself if nothing else is in it. */
  removeAll(): void {
    for (const d of this.live) rmSync(d, { recursive: true, force: true });
    this.live.clear();
    rmSync(this.setupDir, { recursive: true, force: true });
    this.unlock();
    removeIfEmpty(this.root);
  }

  unlock(): void {
    if (!this.locked) return;
    this.locked = false;
    unlockDir(this.root);
  }
}

function readPgid(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').trim()) || 0;
  } catch {
    return 0; // the job never got as far as spawning
  }
}
