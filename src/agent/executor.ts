/*
 * One job attempt, from claim to reported result:
 *
 *   prepare ─▶ start ─▶ spawn ─▶ running ─▶ exited ─▶ flush logs ─▶ remove dir ─▶ report result
 *   (dir, secrets,  (the server      │  cancel / timeout / shutdown: SIGTERM to the group,
 *    distribution)   confirms the    │  SIGKILL after the grace period; reported as such
 *                    claim; 409:     │  lost claim / runner deleted: SIGKILL now, nothing more is reported
 *                    dropped)        │  lease ran out: SIGTERM, SIGKILL after the lease grace, nothing reported
 *
 * Nothing is spawned unless the server has just confirmed the claim (`start`) and the runner's
 * lease holds right then: a claim answer read late (an agent frozen mid-poll) cannot start a job
 * that has moved to another runner. A job whose process exited while the lease did not hold is
 * not reported either; the server requeues it.
 *
 * A failure while preparing (refused archive, undecryptable secrets) fails the job without
 * running anything. The result is retried until the server accepts or refuses it, so a server
 * restart mid-job loses nothing; a 409 means another runner owns the job now and is final.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { openSealed } from '../lib/sealed.js';
import { Backoff, type Sleep } from './backoff.js';
import type { Distribution } from './distribution.js';
import { classify, statusOf } from './errors.js';
import { LineSplitter } from './line-splitter.js';
import { LogStreamer } from './log-streamer.js';
import { Masker } from './masker.js';
import { ProcessGroup, buildScript, type ExitStatus } from './process-group.js';
import type { ClaimedJob, JobResultBody } from '../protocol/runner.js';
import type { RunnerClient } from './runner-client.js';
import type { JobDir, Workspace } from './workspace.js';
import { jsonProblem } from '../lib/json-problem.js';

export type KillReason = 'cancelled' | 'timed_out' | 'shutdown' | 'lost' | 'deleted' | 'expired';

export interface ExecutionSummary {
  jobId: number;
  attempt: number;
  exitCode: number | null;
  outcome: 'succeeded' | 'failed' | 'cancelled' | 'timed_out' | 'lost' | 'abandoned' | 'expired';
  error: string | null;
  durationMs: number;
  /** Whether the server accepted the result. */
  reported: boolean;
  logLines: number;
}

export interface ExecutionDeps {
  client: RunnerClient;
  workspace: Workspace;
  distribution: Distribution | undefined;
  privateKey: string;
  runnerId: string;
  pool: string;
  /** SIGTERM → SIGKILL grace for cancel, timeout and shutdown. */
  graceMs: number;
  clock: Clock;
  sleep: Sleep;
  log: Logger;
  /** The environment jobs start from (the allowlisted part of the agent's; RUNYARD_* removed). */
  baseEnv: NodeJS.ProcessEnv;
  onStarted: () => void;
  /** Whether the runner's lease has held since this job was claimed (read the clock afresh). */
  leaseHolds: () => boolean;
  /** SIGTERM-to-SIGKILL grace when the lease runs out. */
  leaseKillGraceMs: number;
  /** Told each job's process group, so the lease is enforced even if the agent is frozen. */
  guard?: { readonly marker: string; add(pgid: number): void; remove(pgid: number): void };
}

const MAX_OUTPUT_BYTES = 512 * 1024;
const MAX_ERROR_CHARS = 10_000;
/** How long to wait for pipes still held by processes that left the job's group. */
const STDIO_DRAIN_MS = 2000;

export class JobExecution {
  readonly id: number;
  readonly attempt: number;
  private killReason: KillReason | undefined;
  private group: ProcessGroup | undefined;
  private streamer: LogStreamer | undefined;
  private exited = false;
  private terminating: Promise<unknown> | undefined;
  /** Aborted when reporting must stop (claim lost, runner deleted). */
  private readonly abandon = new AbortController();

  constructor(
    private readonly job: ClaimedJob,
    private readonly deps: ExecutionDeps,
  ) {
    this.id = job.id;
    this.attempt = job.attempt;
  }

  /** Stops the job. Cancel, timeout and shutdown are reported; lost and deleted are not. */
  kill(reason: KillReason): void {
    if (reason === 'expired') {
      // Not reported (the server requeues the job), but stopped gently: its claim may be fine.
      if (this.abandon.signal.aborted || this.exited) return;
      this.killReason = reason;
      this.abandon.abort();
      this.streamer?.abandon();
      if (this.group) this.terminating ??= this.group.terminate(this.deps.leaseKillGraceMs, this.deps.clock, this.deps.sleep);
      return;
    }
    const silent = reason === 'lost' || reason === 'deleted';
    if (silent) {
      if (this.abandon.signal.aborted) return;
      this.killReason = reason;
      this.abandon.abort();
      this.streamer?.abandon();
      this.group?.kill();
      return;
    }
    if (this.killReason || this.exited) return; // the first reason wins; a finished job stays finished
    this.killReason = reason;
    const why = reason === 'cancelled' ? 'cancelled' : reason === 'timed_out' ? `timed out after ${this.job.timeoutMs}ms` : 'the agent is shutting down';
    this.deps.log.info({ reason }, 'stopping job');
    this.streamer?.push('s', `runyard: ${why}; sending SIGTERM to the job's processes (SIGKILL after ${this.deps.graceMs}ms)`);
    if (this.group) this.terminating ??= this.group.terminate(this.deps.graceMs, this.deps.clock, this.deps.sleep);
  }

  async run(): Promise<ExecutionSummary> {
    const { clock, log, workspace } = this.deps;
    const startedAt = clock.now();
    let dir: JobDir | undefined;
    let masker = new Masker([]);
    let failure: string | undefined;
    let status: ExitStatus | undefined;
    let spawnedAt = startedAt;
    let exitedAt = startedAt;
    try {
      dir = workspace.createJobDir(this.id, this.attempt, this.job.payload);
      let secrets: Record<string, string> = {};
      try {
        if (this.job.secrets) secrets = openSealed(this.deps.privateKey, this.job.secrets);
      } catch (err) {
        throw new Error(`cannot decrypt the job's secrets (was the runner's key replaced?): ${(err as Error).message}`);
      }
      masker = new Masker(Object.values(secrets));
      this.streamer = this.newStreamer();
      if (this.abandon.signal.aborted) this.streamer.abandon();
      this.streamer.push('s', `runyard: job ${this.id} attempt ${this.attempt} on runner ${this.deps.runnerId} (pool ${this.deps.pool})`);
      if (this.deps.distribution) {
        const { entries } = await this.deps.distribution.extractInto(dir.workdir, this.abandon.signal);
        this.streamer.push('s', `runyard: extracted distribution ${this.deps.distribution.info.name} (${entries} entries)`);
      }
      if (!this.killReason) await this.confirmStart();
      if (!this.killReason) {
        spawnedAt = clock.now();
        status = await this.execute(dir, secrets, masker);
        exitedAt = clock.now();
      }
    } catch (err) {
      if (err instanceof LeaseLost) this.kill('expired');
      else {
        failure = masker.mask((err as Error).message);
        log.warn({ reason: failure }, 'job could not be started');
        this.streamer?.push('s', `runyard: ${failure}`);
      }
    }

    const body = this.result(status, failure, dir, masker, exitedAt - spawnedAt);
    const summary: ExecutionSummary = {
      jobId: this.id,
      attempt: this.attempt,
      exitCode: body.exitCode,
      outcome: body.outcome ?? (body.exitCode === 0 && !failure ? 'succeeded' : 'failed'),
      error: body.error ?? null,
      durationMs: clock.now() - startedAt,
      reported: false,
      logLines: 0,
    };
    if (this.streamer && !this.abandon.signal.aborted) {
      this.streamer.push('s', `runyard: ${describe(body)} after ${body.durationMs}ms`);
      if ((await this.streamer.close()) === 'lost') this.kill('lost');
      summary.logLines = this.streamer.sentLines;
    }
    // Output read and logs flushed: the dir is no longer needed, even if the result must wait.
    if (dir) {
      try {
        workspace.removeJobDir(dir);
      } catch (err) {
        log.warn({ dir: dir.root, reason: (err as Error).message }, 'could not remove job dir');
      }
    }
    if (this.abandon.signal.aborted) summary.outcome = this.killReason === 'lost' ? 'lost' : this.killReason === 'expired' ? 'expired' : 'abandoned';
    else summary.reported = await this.report(body);
    return summary;
  }

  /** Runs the commands; resolves when the shell exited, leftovers were stopped and pipes drained. */
  private async execute(dir: JobDir, secrets: Record<string, string>, masker: Masker): Promise<ExitStatus> {
    const { clock, sleep, graceMs, log } = this.deps;
    // RUNYARD_RUNNER_ID also lets the process provider find (and kill) a job's processes if this
    // agent dies without stopping them: it looks for it in /proc/<pid>/environ.
    const env = jobEnv(this.deps.baseEnv, {
      ...this.job.env,
      ...secrets,
      RUNYARD_JOB_ID: String(this.id),
      RUNYARD_ATTEMPT: String(this.attempt),
      RUNYARD_RUNNER_ID: this.deps.runnerId,
      RUNYARD_POOL: this.deps.pool,
      RUNYARD_PAYLOAD: dir.payloadPath,
      RUNYARD_OUTPUT: dir.outputPath,
      RUNYARD_WORKDIR: dir.workdir,
      RUNYARD_SETUP_DIR: this.deps.workspace.setupDir,
      // the lease guard finds the job's processes by it, even those that left the job's group
      ...(this.deps.guard ? { RUNYARD_LEASE_ID: this.deps.guard.marker } : {}),
    });
    // Checked right before and right after the spawn, synchronously: an agent frozen in between
    // kills the job the moment it runs again, before it reads anything else.
    if (!this.deps.leaseHolds()) throw new LeaseLost();
    const group = ProcessGroup.spawn(buildScript(this.job.commands), { cwd: dir.workdir, env });
    this.group = group;
    // The group is on disk first: the job already runs, and adding it to the guard may start the
    // guard's process (a while on a busy machine); an agent killed meanwhile leaves it findable.
    if (group.pid) this.deps.workspace.recordGroup(dir, group.pid);
    if (group.pid) this.deps.guard?.add(group.pid);
    if (!this.deps.leaseHolds()) this.kill('expired');
    const streamer = this.streamer!;
    const out = new LineSplitter((l) => streamer.push('o', l), masker);
    const err = new LineSplitter((l) => streamer.push('e', l), masker);
    const pipes = [group.child.stdout!, group.child.stderr!];
    group.child.stdout!.on('data', (c: Buffer) => out.write(c));
    group.child.stderr!.on('data', (c: Buffer) => err.write(c));
    const drained = Promise.all(pipes.map((p) => new Promise<void>((r) => p.once('close', () => r()))));
    this.pressure = (paused) => pipes.forEach((p) => (paused ? p.pause() : p.resume()));
    log.info({ pid: group.pid }, 'job started');
    this.deps.onStarted();

    // A kill that arrived while the job was being prepared.
    if (this.killReason === 'lost' || this.killReason === 'deleted') group.kill();
    else if (this.killReason === 'expired') this.terminating ??= group.terminate(this.deps.leaseKillGraceMs, clock, sleep);
    else if (this.killReason) this.terminating ??= group.terminate(graceMs, clock, sleep);

    const timer = new AbortController();
    void sleepLong(sleep, this.job.timeoutMs, timer.signal).then(() => {
      if (!timer.signal.aborted) this.kill('timed_out');
    });
    const status = await group.exited;
    // Exited while the lease did not hold (the guard may have stopped it while we were frozen):
    // not a result to report; the server hands the job out again.
    if (!this.deps.leaseHolds()) this.kill('expired');
    this.exited = true;
    timer.abort();
    // Whatever the job left running in its group goes with it.
    if (this.abandon.signal.aborted) group.kill();
    else await (this.terminating ??= group.terminate(graceMs, clock, sleep));
    const stdioTimer = new AbortController();
    await Promise.race([drained, sleep(STDIO_DRAIN_MS, stdioTimer.signal)]);
    stdioTimer.abort();
    for (const p of pipes) p.destroy();
    if (group.pid) this.deps.guard?.remove(group.pid);
    out.end();
    err.end();
    log.info({ exitCode: status.code, signal: status.signal }, 'job process exited');
    return status;
  }

  private pressure: (paused: boolean) => void = () => {};

  private newStreamer(): LogStreamer {
    const { client, clock, sleep, log } = this.deps;
    return new LogStreamer({
      send: (seq, lines) => client.postLogs(this.id, { attempt: this.attempt, seq, lines }),
      clock,
      sleep,
      backoff: reportBackoff(),
      log,
      onCancel: () => this.kill('cancelled'),
      onLost: () => this.kill('lost'),
      onPressure: (paused) => this.pressure(paused),
    });
  }

  /**
   * claimed → running on the server, before anything is spawned: the fence that keeps a stale
   * claim from starting. Retried while the server cannot be reached and the lease holds; 409
   * (another runner holds the job now, or it is over) drops the job unreported.
   */
  private async confirmStart(): Promise<void> {
    const backoff = reportBackoff();
    while (!this.killReason) {
      if (!this.deps.leaseHolds()) return this.kill('expired');
      try {
        const r = await this.deps.client.startJob(this.id, this.attempt, this.abandon.signal);
        if (r.cancel) this.kill('cancelled');
        return;
      } catch (err) {
        if (this.abandon.signal.aborted) return;
        const cls = classify(err);
        if (cls !== 'retry') {
          const why = cls === 'fatal' ? 'start refused; dropping the job' : 'start refused: this runner no longer holds the claim; dropping the job';
          this.deps.log.warn({ status: statusOf(err), reason: (err as Error).message }, why);
          return this.kill('lost');
        }
        const delayMs = backoff.next();
        if (backoff.failures === 1) this.deps.log.warn({ delayMs, reason: (err as Error).message }, 'start not confirmed; retrying');
        await this.deps.sleep(delayMs, this.abandon.signal);
      }
    }
  }

  private result(status: ExitStatus | undefined, failure: string | undefined, dir: JobDir | undefined, masker: Masker, durationMs: number): JobResultBody {
    const body: JobResultBody = { attempt: this.attempt, exitCode: status?.code ?? null, durationMs: Math.max(0, Math.round(durationMs)) };
    const errors: string[] = [];
    if (failure) errors.push(failure);
    if (this.killReason === 'cancelled') {
      body.outcome = 'cancelled';
      errors.push('cancelled');
    } else if (this.killReason === 'timed_out') {
      body.outcome = 'timed_out';
      errors.push(`timed out after ${this.job.timeoutMs}ms`);
    } else if (this.killReason === 'shutdown') errors.push('agent shutting down');
    else if (status?.error) errors.push(`could not start /bin/sh: ${status.error}`);
    else if (status?.signal) errors.push(`killed by signal ${status.signal}`);
    if (status && dir) {
      const out = readOutput(dir.outputPath);
      if (out.error) errors.push(masker.mask(out.error));
      else if (out.value !== undefined) body.output = masker.maskDeep(out.value);
    }
    if (errors.length) body.error = errors.join('; ').slice(0, MAX_ERROR_CHARS);
    return body;
  }

  /** Sends the result until the server accepts or refuses it. */
  private async report(body: JobResultBody): Promise<boolean> {
    const { client, log, sleep } = this.deps;
    const backoff = reportBackoff();
    for (;;) {
      if (this.abandon.signal.aborted) return false;
      try {
        const r = await client.postResult(this.id, body, this.abandon.signal);
        log.info({ state: r.state, exitCode: body.exitCode, durationMs: body.durationMs }, 'job result reported');
        return true;
      } catch (err) {
        if (this.abandon.signal.aborted) return false;
        const cls = classify(err);
        if (cls === 'fatal') {
          log.error({ status: statusOf(err), reason: (err as Error).message }, 'result refused; dropping it');
          return false;
        }
        if (cls !== 'retry') {
          log.warn({ status: statusOf(err), reason: (err as Error).message }, 'result refused: claim lost; dropping it');
          return false;
        }
        const delayMs = backoff.next();
        if (backoff.failures === 1 || backoff.failures % 10 === 0) log.warn({ delayMs, attempt: backoff.failures, reason: (err as Error).message }, 'result not delivered; retrying');
        await sleep(delayMs, this.abandon.signal);
      }
    }
  }
}

/** The lease ran out between the checks before a spawn. */
class LeaseLost extends Error {
  constructor() {
    super('the runner lease ran out before the job could start');
  }
}

/** setTimeout fires at once for delays over 2^31-1 ms (24.8 days); longer timeouts sleep in steps. */
async function sleepLong(sleep: Sleep, ms: number, signal: AbortSignal): Promise<void> {
  for (let left = ms; left > 0 && !signal.aborted; left -= 2 ** 31 - 1) await sleep(Math.min(left, 2 ** 31 - 1), signal);
}

/** Reports and log batches retry quickly at first, then every few seconds. */
function reportBackoff(): Backoff {
  return new Backoff({ baseMs: 200, maxMs: 5000 });
}

/**
 * The job's environment: `base` (the allowlisted part of the agent's, src/lib/base-env.ts) minus
 * every RUNYARD_* variable (agent settings must not leak into jobs), plus the job's on top.
 */
export function jobEnv(base: NodeJS.ProcessEnv, vars: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('RUNYARD_')) env[k] = v;
  return Object.assign(env, vars);
}

function readOutput(file: string): { value?: unknown; error?: string } {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return {}; // the job wrote no output
  }
  if (size > MAX_OUTPUT_BYTES) return { error: `RUNYARD_OUTPUT is ${size} bytes; the limit is ${MAX_OUTPUT_BYTES}` };
  const text = readFileSync(file, 'utf8');
  if (!text.trim()) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { error: `RUNYARD_OUTPUT is not valid JSON: ${(err as Error).message}` };
  }
  // the server's own rule for output; walking a deeper value (masking) would overflow the stack
  const problem = jsonProblem(value, { strings: false });
  return problem ? { error: `RUNYARD_OUTPUT ${problem.message}` } : { value };
}

function describe(r: JobResultBody): string {
  if (r.outcome === 'cancelled') return 'cancelled';
  if (r.outcome === 'timed_out') return 'timed out';
  return r.exitCode === null ? `ended without exit code (${r.error ?? 'killed'})` : `exit code ${r.exitCode}`;
}
