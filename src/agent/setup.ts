/**
 * The pool's `setup` commands, run once when the runner starts and before it claims anything,
 * in <work-dir>/setup with the pool's env. Their output goes to the agent's log; a failure stops
 * the agent with the exit status and the last lines of output.
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { Sleep } from './backoff.js';
import { SetupFailedError } from './errors.js';
import { jobEnv } from './executor.js';
import { LineSplitter } from './line-splitter.js';
import { ProcessGroup, buildScript } from './process-group.js';

export interface SetupDeps {
  runnerId: string;
  cwd: string;
  env: Record<string, string>;
  baseEnv: NodeJS.ProcessEnv;
  timeoutMs: number;
  graceMs: number;
  clock: Clock;
  sleep: Sleep;
  log: Logger;
  signal: AbortSignal;
}

const TAIL_LINES = 20;

export async function runSetup(commands: string[], deps: SetupDeps): Promise<void> {
  if (commands.length === 0) return;
  const { log, clock, sleep, graceMs } = deps;
  const started = clock.now();
  log.info({ commands: commands.length }, 'running setup commands');
  const group = ProcessGroup.spawn(buildScript(commands), { cwd: deps.cwd, env: jobEnv(deps.baseEnv, { ...deps.env, RUNYARD_RUNNER_ID: deps.runnerId, RUNYARD_WORKDIR: deps.cwd, RUNYARD_SETUP_DIR: deps.cwd }) });
  const tail: string[] = [];
  const onLine = (stream: 'stdout' | 'stderr') => (line: string) => {
    log.info({ stream, line }, 'setup output');
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
  };
  const out = new LineSplitter(onLine('stdout'));
  const err = new LineSplitter(onLine('stderr'));
  group.child.stdout!.on('data', (c: Buffer) => out.write(c));
  group.child.stderr!.on('data', (c: Buffer) => err.write(c));
  const closed = Promise.all([group.child.stdout!, group.child.stderr!].map((p) => new Promise((r) => p.once('close', r))));
  let why: string | undefined;
  const stop = new AbortController();
  const onAbort = () => {
    why = 'the agent is stopping';
    void group.terminate(graceMs, clock, sleep);
  };
  deps.signal.addEventListener('abort', onAbort, { once: true });
  void sleep(deps.timeoutMs, stop.signal).then(() => {
    if (stop.signal.aborted) return;
    why = `timed out after ${deps.timeoutMs}ms`;
    void group.terminate(graceMs, clock, sleep);
  });
  const status = await group.exited;
  stop.abort();
  deps.signal.removeEventListener('abort', onAbort);
  await group.terminate(graceMs, clock, sleep);
  await Promise.race([closed, sleep(2000)]);
  out.end();
  err.end();
  const ok = status.code === 0 && !why;
  log.info({ exitCode: status.code, durationMs: clock.now() - started }, ok ? 'setup finished' : 'setup failed');
  if (ok) return;
  if (deps.signal.aborted) throw new Error('setup interrupted: the agent is stopping');
  const reason = why ?? status.error ?? (status.signal ? `killed by ${status.signal}` : `exit code ${status.code}`);
  throw new SetupFailedError(`setup failed (${reason}); the runner cannot take jobs. Last output:\n${tail.map((l) => '  ' + l).join('\n') || '  (none)'}`);
}
