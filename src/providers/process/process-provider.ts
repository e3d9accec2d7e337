import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { LaunchSpec, Provider, ProviderRunner } from '../provider.js';
import type { Logger } from '../../lib/logger.js';
import { sleep } from '../../lib/clock.js';
import { AGENT_ENV_NAMES, baseEnv } from '../../lib/base-env.js';

const CLI = fileURLToPath(new URL('../../../bin/runyard.js', import.meta.url));

interface RunnerFile {
  runnerId: string;
  pool: string;
  pid: number;
  instanceId: string;
  startedAt: number;
}

/**
 * Runners as `runyard agent` child processes on this machine. Each has a directory under
 * <dataDir>/runners/<id> with its state, work dirs and a runner.json naming its pid; its
 * output goes to <dataDir>/logs/runners/<id>.log. The processes are detached, so a crash of
 * the control plane does not take their jobs down; on restart list() finds them again.
 */
export class ProcessProvider implements Provider {
  readonly name = 'process';
  readonly runsOnServerHost = true;
  /** This machine and data dir: process runners are only visible to servers sharing both. */
  readonly owner: string;
  private listeners: ((runnerId: string, detail: string) => void)[] = [];
  private children = new Map<string, { exited: Promise<void> }>();

  constructor(private dataDir: string, private log: Logger, private instanceId: string) {
    this.owner = createHash('sha256').update(`${hostname()}:${dataDir}`).digest('hex').slice(0, 12);
    mkdirSync(this.runnersDir, { recursive: true });
    mkdirSync(this.logsDir, { recursive: true });
  }

  get runnersDir() {
    return join(this.dataDir, 'runners');
  }

  get logsDir() {
    return join(this.dataDir, 'logs', 'runners');
  }

  async create(spec: LaunchSpec): Promise<{ ref: string }> {
    const dir = join(this.runnersDir, spec.runnerId);
    mkdirSync(join(dir, 'state'), { recursive: true, mode: 0o700 });
    mkdirSync(join(dir, 'work'), { recursive: true });
    const out = openSync(join(this.logsDir, `${spec.runnerId}.log`), 'a');
    // An allowlist of the control plane's environment, never all of it: its database password,
    // cloud credentials and tokens are not the runner's business (nor its jobs').
    const env: NodeJS.ProcessEnv = {
      ...baseEnv(process.env, AGENT_ENV_NAMES),
      ...spec.pool.env,
      RUNYARD_SERVER: spec.serverUrl,
      RUNYARD_REGISTRATION_TOKEN: spec.registrationToken,
      RUNYARD_RUNNER_ID: spec.runnerId,
      RUNYARD_RUNNER_NAME: spec.name,
      RUNYARD_STATE_DIR: join(dir, 'state'),
      RUNYARD_WORK_DIR: join(dir, 'work'),
      RUNYARD_INSTANCE_ID: spec.instanceId,
    };
    const child = spawn(process.execPath, [CLI, 'agent'], { cwd: dir, env, detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid!));
      child.once('error', reject);
    });
    const file: RunnerFile = { runnerId: spec.runnerId, pool: spec.pool.name, pid, instanceId: spec.instanceId, startedAt: Date.now() };
    writeFileSync(join(dir, 'runner.json'), JSON.stringify(file) + '\n');
    const exited = new Promise<void>((resolve) =>
      child.once('exit', (code, signal) => {
        this.children.delete(spec.runnerId);
        const detail = signal ? `killed by ${signal}` : `exited with code ${code}`;
        this.log.info({ runnerId: spec.runnerId, pid, code, signal }, 'runner process exited');
        const stragglers = killStragglers(spec.runnerId);
        if (stragglers) this.log.warn({ runnerId: spec.runnerId, stragglers }, 'killed job processes left behind by the runner');
        this.cleanup(spec.runnerId);
        for (const l of this.listeners) l(spec.runnerId, detail);
        resolve();
      }),
    );
    this.children.set(spec.runnerId, { exited });
    child.unref();
    return { ref: `pid:${pid}@${this.owner}` };
  }

  onExit(listener: (runnerId: string, detail: string) => void): void {
    this.listeners.push(listener);
  }

  async list(): Promise<ProviderRunner[]> {
    const out: ProviderRunner[] = [];
    if (!existsSync(this.runnersDir)) return out;
    for (const id of readdirSync(this.runnersDir)) {
      const f = this.readRunnerFile(id);
      // Runners of another runyard database that shares this data dir are not ours to report.
      if (!f || f.instanceId !== this.instanceId) continue;
      const alive = isOurAgent(f.pid, f.runnerId);
      if (!alive && !this.children.has(id)) {
        killStragglers(id); // a runner that died while nobody watched: its jobs must not run on
        this.cleanup(id);
        continue;
      }
      out.push({ runnerId: f.runnerId, ref: `pid:${f.pid}@${this.owner}`, pool: f.pool, alive, startedAt: f.startedAt });
    }
    return out;
  }

  async describe(runnerId: string): Promise<ProviderRunner | undefined> {
    return (await this.list()).find((r) => r.runnerId === runnerId);
  }

  async terminate(runnerId: string, opts: { graceMs: number }): Promise<void> {
    const f = this.readRunnerFile(runnerId);
    if (!f || !isOurAgent(f.pid, runnerId)) {
      this.cleanup(runnerId);
      return; // already gone
    }
    signal(f.pid, 'SIGTERM'); // the agent drains: finishes its jobs, deregisters, exits
    const deadline = Date.now() + opts.graceMs;
    while (Date.now() < deadline && isOurAgent(f.pid, runnerId)) await sleep(50);
    if (isOurAgent(f.pid, runnerId)) {
      this.log.warn({ runnerId, pid: f.pid }, 'runner did not stop within its grace period; killing it');
      signal(-f.pid, 'SIGKILL'); // the whole process group, jobs included
      signal(f.pid, 'SIGKILL');
    }
    await this.children.get(runnerId)?.exited;
    killStragglers(runnerId);
    this.cleanup(runnerId);
  }

  async close(): Promise<void> {
    // Runners outlive the control plane on purpose; nothing to stop here.
  }

  private readRunnerFile(id: string): RunnerFile | undefined {
    try {
      return JSON.parse(readFileSync(join(this.runnersDir, id, 'runner.json'), 'utf8'));
    } catch {
      return undefined;
    }
  }

  private cleanup(runnerId: string) {
    rmSync(join(this.runnersDir, runnerId), { recursive: true, force: true });
  }
}

function signal(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * Kills processes that carry the runner's id in their environment: job process groups of an
 * agent that was killed without a chance to stop them. Returns how many were signalled.
 */
function killStragglers(runnerId: string): number {
  let n = 0;
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return 0;
  }
  const marker = `RUNYARD_RUNNER_ID=${runnerId}\0`;
  for (const pid of pids) {
    if (Number(pid) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').includes(marker)) {
        process.kill(Number(pid), 'SIGKILL');
        n++;
      }
    } catch {
      // gone already, or not ours to read
    }
  }
  return n;
}

/** The pid is alive and is still our agent for this runner (pids get reused). */
function isOurAgent(pid: number, runnerId: string): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    if (!environ.includes(`RUNYARD_RUNNER_ID=${runnerId}`)) return false;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat); // a zombie is not alive
  } catch {
    return true; // no /proc (not Linux): trust kill(0)
  }
}
