/*
 * One job attempt, from claim to reported result:
 *
 *   prepare ─▶ spawn ─▶ running ─▶ exited ─▶ flush logs ─▶ remove dir ─▶ report result
 *   (dir, secrets,       │  cancel / timeout / shutdown: SIGTERM to the group,
 *    distribution)       │  SIGKILL after the grace period; reported as such
 *                        │  lost claim / runner deleted: SIGKILL now, nothing more is reported
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
import { HttpError, isRetryable } from './errors.js';
import { LineSplitter } from './line-splitter.js';
import { LogStreamer } from './log-streamer.js';
import { Masker } from './masker.js';
import { ProcessGroup, buildScript, type ExitStatus } from './process-group.js';
import type { ClaimedJob, JobResultBody, RunnerClient } from './runner-client.js';
import type { JobDir, Workspace } from './workspace.js';

export type KillReason = 'cancelled' | 'timed_out' | 'shutdown' | 'lost' | 'deleted';

export interface ExecutionSummary {
  jobId: number;
  attempt: number;
  exitCode: number | null;
  outcome: 'succeeded' | 'failed' | 'cancelled' | 'timed_out' | 'lost' | 'abandoned';
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
      if (!this.killReason) {
        spawnedAt = clock.now();
        status = await this.execute(dir, secrets, masker);
        exitedAt = clock.now();
      }
    } catch (err) {
      failure = masker.mask((err as Error).message);
      log.warn({ reason: failure }, 'job could not be started');
      this.streamer?.push('s', `runyard: ${failure}`);
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
    if (this.abandon.signal.aborted) summary.outcome = this.killReason === 'lost' ? 'lost' : 'abandoned';
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
    });
    const group = ProcessGroup.spawn(buildScript(this.job.commands), { cwd: dir.workdir, env });
    this.group = group;
    if (group.pid) this.deps.workspace.recordGroup(dir, group.pid);
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
    void this.markStarted();

    // A kill that arrived while the job was being prepared.
    if (this.killReason === 'lost' || this.killReason === 'deleted') group.kill();
    else if (this.killReason) this.terminating ??= group.terminate(graceMs, clock, sleep);

    const timer = new AbortController();
    void sleepLong(sleep, this.job.timeoutMs, timer.signal).then(() => {
      if (!timer.signal.aborted) this.kill('timed_out');
    });
    const status = await group.exited;
    this.exited = true;
    timer.abort();
    // Whatever the job left running in its group goes with it.
    if (this.abandon.signal.aborted) group.kill();
    else await (this.terminating ??= group.terminate(graceMs, clock, sleep));
    const stdioTimer = new AbortController();
    await Promise.race([drained, sleep(STDIO_DRAIN_MS, stdioTimer.signal)]);
    stdioTimer.abort();
    for (const p of pipes) p.destroy();
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

  /** claimed → running on the server; best effort, it only matters for what users see. */
  private async markStarted(): Promise<void> {
    const backoff = reportBackoff();
    while (!this.exited && !this.abandon.signal.aborted) {
      try {
        const r = await this.deps.client.startJob(this.id, this.attempt, this.abandon.signal);
        if (r.cancel) this.kill('cancelled');
        return;
      } catch (err) {
        if (this.abandon.signal.aborted) return;
        if (err instanceof HttpError && err.status === 409) {
          if (!this.exited) {
            this.deps.log.warn('start refused: claim lost; killing the job');
            this.kill('lost');
          }
          return;
        }
        if (!isRetryable(err)) return void this.deps.log.warn({ reason: (err as Error).message }, 'start not recorded');
        await this.deps.sleep(backoff.next(), this.abandon.signal);
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
        if (err instanceof HttpError && err.status === 409) {
          log.warn({ reason: err.message }, 'result refused: claim lost; dropping it');
          return false;
        }
        if (!isRetryable(err)) {
          log.error({ status: (err as HttpError).status, reason: (err as Error).message }, 'result refused; dropping it');
          return false;
        }
        const delayMs = backoff.next();
        if (backoff.failures === 1 || backoff.failures % 10 === 0) log.warn({ delayMs, attempt: backoff.failures, reason: (err as Error).message }, 'result not delivered; retrying');
        await sleep(delayMs, this.abandon.signal);
      }
    }
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
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    return { error: `RUNYARD_OUTPUT is not valid JSON: ${(err as Error).message}` };
  }
}

function describe(r: JobResultBody): string {
  if (r.outcome === 'cancelled') return 'cancelled';
  if (r.outcome === 'timed_out') return 'timed out';
  return r.exitCode === null ? `ended without exit code (${r.error ?? 'killed'})` : `exit code ${r.exitCode}`;
}
