/*
 * A discrete-event simulation of one pool configuration over a job trace. Virtual time only:
 * no processes, no sockets, no sleeps. The scaling decisions are the real `decide()`; around it
 * sit the queue rules as the server applies them:
 *
 *   arrival ──► queue (FIFO per pool) ──► a runner with a free slot claims at once
 *                  │ nothing free: wake the scheduler (a pass now, at most one per 50 ms)
 *   pass: decide(pools, runners, queue, now) ──► start (token bucket, failure rate, latency)
 *                                              ──► drain / terminate
 *   runner: starting ──latency──► idle ⇄ busy ──► draining ──► terminated
 *
 * Passes also run on the scheduler tick (scale-down after idleTimeout, minIdle windows) and, at
 * most once per 250 ms, after a job ends on a pool that keeps runners warm (the server's paced
 * load wake). Each state change is accounted as it happens: runner-hours, idle runner-hours, cost,
 * the peak, and samples of queue depth and runners by state for the charts.
 */
import { performance } from 'node:perf_hooks';
import { decide, type Action, type PoolView, type RunnerView } from '../scheduler/decide.js';
import type { PoolConfig } from '../config/schema.js';
import { EventHeap, type TimedEvent } from './event-heap.js';
import { Prng } from './prng.js';
import { sampleLatency, type Latency } from './provider-model.js';
import { TokenBucket } from '../lib/token-bucket.js';
import type { TraceJob } from './trace.js';
import { summarize, type PolicyFigures } from './figures.js';

/** Same spacing as the server's scheduler: urgent follow-ups and load-change passes. */
export const URGENT_GAP_MS = 50;
export const LOAD_GAP_MS = 250;
/** A runner up this long after registering proves its pool healthy again (as the server counts). */
const HEALTHY_AFTER_MS = 60_000;
/** Jobs that still wait this long after the last arrival (a pool capped at 0) end the run. */
const HORIZON_MS = 86_400_000;

export interface SimPoolInput {
  config: PoolConfig;
  latency: Latency;
  apiRate?: { perSecond: number; burst: number };
  startFailureRate: number;
  costPerHour: number;
  /** ms from a job's result to the runner's next claim (the agent's round trip); default 0 */
  claimGap?: number;
}

export interface SimOptions {
  seed: number;
  tickMs: number;
  sloMs: number;
  /** start this long before the first arrival (warm pools fill first) */
  warmupMs?: number;
  /** run at least until then (epoch ms), e.g. the end of a --since window */
  end?: number;
  /** points in the time series */
  samples?: number;
  onProgress?: (p: { now: number; start: number; lastArrival: number; done: number; total: number }) => void;
  /** keep every decide() time (ms) and the runners it saw, for the benchmark */
  timePasses?: boolean;
}

export interface SimSeries {
  t: number[];
  queued: number[];
  starting: number[];
  idle: number[];
  busy: number[];
  draining: number[];
}

export interface SimResult extends PolicyFigures {
  /** jobs still queued when the run ended (their wait counts up to the end) */
  unfinished: number;
  pools: Record<string, PolicyFigures>;
  series: SimSeries;
  start: number;
  end: number;
}

type State = 'starting' | 'idle' | 'busy' | 'draining' | 'terminated';

interface SimRunner extends RunnerView {
  state: State;
  pool: PoolState;
  at: number;
  registeredAt: number | null;
}

interface PoolState {
  index: number;
  input: SimPoolInput;
  queue: number[];
  head: number;
  live: SimRunner[];
  free: Set<SimRunner>;
  bucket: TokenBucket | undefined;
  failures: { count: number; lastAt: number };
  warmable: boolean;
  runnerMs: number;
  idleMs: number;
  cost: number;
  peak: number;
  starts: number;
  failedStarts: number;
}

type Ev = TimedEvent & ({ kind: 'tick' } | { kind: 'pass' } | { kind: 'sample' } | { kind: 'launch'; r: SimRunner } | { kind: 'register'; r: SimRunner } | { kind: 'done'; r: SimRunner; job: number } | { kind: 'free'; r: SimRunner });

export class Simulation {
  private heap = new EventHeap<Ev>();
  private rng: Prng;
  private pools: PoolState[];
  private byName = new Map<string, PoolState>();
  private byId = new Map<string, SimRunner>();
  private now = 0;
  private lastPassAt = -Infinity;
  private passAt = Infinity;
  private nextId = 0;
  private counts: Record<State, number> = { starting: 0, idle: 0, busy: 0, draining: 0, terminated: 0 };
  private liveTotal = 0;
  private peakTotal = 0;
  private done = 0;
  /** each job's simulated queue wait (ms), in trace order */
  readonly waits: Float64Array;
  private jobPool: Uint16Array;
  private series: SimSeries = { t: [], queued: [], starting: [], idle: [], busy: [], draining: [] };
  private queuedTotal = 0;
  /** decide() wall times in ms and the live runners each pass saw (timePasses only) */
  readonly passTimes: number[] = [];
  readonly passRunners: number[] = [];

  constructor(pools: SimPoolInput[], private jobs: TraceJob[], private opts: SimOptions) {
    this.rng = new Prng(opts.seed);
    this.pools = pools.map((input, index) => ({
      index,
      input,
      queue: [],
      head: 0,
      live: [],
      free: new Set(),
      bucket: input.apiRate ? new TokenBucket(input.apiRate.perSecond, input.apiRate.burst) : undefined,
      failures: { count: 0, lastAt: 0 },
      warmable: input.config.minIdle > 0 || input.config.minIdleSchedule !== undefined || (input.config.ec2?.warmPool.running ?? 0) > 0,
      runnerMs: 0,
      idleMs: 0,
      cost: 0,
      peak: 0,
      starts: 0,
      failedStarts: 0,
    }));
    for (const p of this.pools) this.byName.set(p.input.config.name, p);
    this.waits = new Float64Array(jobs.length);
    this.jobPool = new Uint16Array(jobs.length);
    jobs.forEach((j, i) => {
      const p = j.pool === undefined ? undefined : this.byName.get(j.pool);
      if (!p) throw new Error(`job ${i + 1} is for pool ${j.pool ?? '(none)'}, which the configuration does not define`);
      this.jobPool[i] = p.index;
    });
  }

  run(): SimResult {
    const jobs = this.jobs;
    const first = jobs[0]?.arrival ?? this.opts.end ?? 0;
    const lastArrival = jobs[jobs.length - 1]?.arrival ?? first;
    const start = first - (this.opts.warmupMs ?? 0);
    const until = Math.max(lastArrival, this.opts.end ?? lastArrival);
    const horizon = until + HORIZON_MS;
    this.sampleGap = Math.max(1000, Math.ceil((until - start) / (this.opts.samples ?? 480) / 1000) * 1000);
    this.now = start;
    this.heap.push({ t: start, kind: 'tick' });
    this.heap.push({ t: start, kind: 'sample' });
    let next = 0;
    let steps = 0;
    let wall = performance.now();
    for (;;) {
      if (++steps % 65536 === 0 && this.opts.onProgress && performance.now() - wall > 1000) {
        wall = performance.now();
        this.opts.onProgress({ now: this.now, start, lastArrival, done: this.done, total: jobs.length });
      }
      const ev = this.heap.peek();
      const arrival = next < jobs.length ? jobs[next]!.arrival : Infinity;
      if (arrival <= (ev?.t ?? Infinity)) {
        if (arrival === Infinity) break;
        this.now = arrival;
        this.arrive(next++);
        continue;
      }
      if (!ev || (this.done === jobs.length && next === jobs.length && ev.t > until) || ev.t > horizon) break;
      this.heap.pop();
      this.now = ev.t;
      this.handle(ev);
    }
    const end = Math.max(this.now, until);
    this.now = end;
    this.sample();
    return this.finish(start, end);
  }

  private handle(ev: Ev): void {
    switch (ev.kind) {
      case 'tick':
        this.pass();
        this.heap.push({ t: ev.t + this.opts.tickMs, kind: 'tick' });
        return;
      case 'pass':
        if (ev.t !== this.passAt) return; // superseded by an earlier pass
        this.passAt = Infinity;
        this.pass();
        return;
      case 'sample':
        this.sample();
        this.heap.push({ t: ev.t + this.sampleGap, kind: 'sample' });
        return;
      case 'launch':
        return this.launch(ev.r);
      case 'register':
        return this.register(ev.r);
      case 'done':
        return this.complete(ev.r, ev.job);
      case 'free':
        return this.freed(ev.r);
    }
  }

  private sampleGap = 1000;

  private sample(): void {
    const s = this.series;
    s.t.push(this.now);
    s.queued.push(this.queuedTotal);
    s.starting.push(this.counts.starting);
    s.idle.push(this.counts.idle);
    s.busy.push(this.counts.busy);
    s.draining.push(this.counts.draining);
  }

  // --- the scheduler ---------------------------------------------------------------------------

  /**
   * Asks for a pass, spaced like the server's. A wake for a pool at maxRunners with jobs queued
   * is dropped: such a pass could start nothing for it and stop none of its idle runners (jobs
   * wait), so it would only repeat the last decision; time-based stops still come with the tick.
   * This keeps a fleet at its cap from costing a pass per arrival.
   */
  private wake(urgent: boolean, p?: PoolState): void {
    if (p && p.live.length >= p.input.config.maxRunners && p.queue.length > p.head) return;
    const at = Math.max(this.now, this.lastPassAt + (urgent ? URGENT_GAP_MS : LOAD_GAP_MS));
    if (at >= this.passAt) return;
    this.passAt = at;
    this.heap.push({ t: at, kind: 'pass' });
  }

  private pass(): void {
    this.lastPassAt = this.now;
    const views: PoolView[] = this.pools.map((p) => {
      if (p.failures.count > 0 && p.live.some((r) => r.registeredAt !== null && r.createdAt > p.failures.lastAt && (r.jobsStarted > 0 || this.now - r.registeredAt >= HEALTHY_AFTER_MS)))
        p.failures = { count: 0, lastAt: 0 };
      return { config: p.input.config, configHash: 'sim', queued: p.queue.length - p.head, runners: p.live, startFailures: p.failures };
    });
    let plan: Action[];
    if (this.opts.timePasses) {
      const t0 = performance.now();
      plan = decide(views, this.now);
      this.passTimes.push(performance.now() - t0);
      this.passRunners.push(this.liveTotal);
    } else plan = decide(views, this.now);
    for (const a of plan) {
      const p = this.byName.get(a.pool)!;
      if (a.kind === 'start') for (let i = 0; i < a.count; i++) this.startRunner(p);
      else {
        const r = this.byId.get(a.runnerId);
        if (!r) continue;
        if (a.kind === 'terminate') {
          if (r.state === 'starting') this.failed(p);
          this.terminate(r);
        } else if (r.state !== 'draining') {
          this.setState(r, 'draining');
          p.free.delete(r);
          if (r.activeJobs === 0) this.terminate(r);
        }
      }
    }
  }

  private failed(p: PoolState): void {
    p.failures = { count: p.failures.count + 1, lastAt: this.now };
    p.failedStarts++;
  }

  // --- runners ---------------------------------------------------------------------------------

  private startRunner(p: PoolState): void {
    const c = p.input.config;
    const r: SimRunner = {
      id: `r${++this.nextId}`,
      state: 'starting',
      createdAt: this.now,
      idleSince: null,
      activeJobs: 0,
      slots: c.ephemeral ? 1 : c.maxJobsPerRunner,
      configHash: 'sim',
      jobsStarted: 0,
      ephemeral: c.ephemeral,
      provider: c.provider,
      image: null,
      pool: p,
      at: p.live.length,
      registeredAt: null,
    };
    p.live.push(r);
    this.byId.set(r.id, r);
    this.counts.starting++;
    p.starts++;
    this.liveTotal++;
    if (this.liveTotal > this.peakTotal) this.peakTotal = this.liveTotal;
    if (p.live.length > p.peak) p.peak = p.live.length;
    const at = p.bucket ? p.bucket.reserve(1, this.now) : this.now;
    this.heap.push({ t: at, kind: 'launch', r });
  }

  private launch(r: SimRunner): void {
    if (r.state !== 'starting') return;
    const p = r.pool;
    if (p.input.startFailureRate > 0 && this.rng.next() < p.input.startFailureRate) {
      this.failed(p);
      this.terminate(r);
      return;
    }
    this.heap.push({ t: this.now + Math.round(sampleLatency(p.input.latency, this.rng)), kind: 'register', r });
  }

  private register(r: SimRunner): void {
    if (r.state !== 'starting') return; // replaced before it came up
    r.registeredAt = this.now;
    r.idleSince = this.now;
    this.setState(r, 'idle');
    r.pool.free.add(r);
    this.dispatch(r.pool);
    this.wake(true, r.pool);
  }

  private setState(r: SimRunner, to: State): void {
    if (r.state === 'idle') r.pool.idleMs += this.now - (r.idleSince ?? this.now);
    this.counts[r.state]--;
    this.counts[to]++;
    r.state = to;
  }

  private terminate(r: SimRunner): void {
    const p = r.pool;
    this.setState(r, 'terminated');
    this.account(r);
    p.free.delete(r);
    const last = p.live.pop()!;
    if (last !== r) {
      p.live[r.at] = last;
      last.at = r.at;
    }
    this.byId.delete(r.id);
    this.liveTotal--;
    this.wake(true);
  }

  private account(r: SimRunner): void {
    const ms = this.now - r.createdAt;
    r.pool.runnerMs += ms;
    r.pool.cost += (ms / 3_600_000) * r.pool.input.costPerHour;
  }

  // --- jobs ------------------------------------------------------------------------------------

  private arrive(job: number): void {
    const p = this.pools[this.jobPool[job]!]!;
    p.queue.push(job);
    this.queuedTotal++;
    this.dispatch(p);
    if (p.queue.length > p.head) this.wake(true, p);
  }

  /** Runners with free slots claim queued jobs, oldest first; the runner waiting longest first. */
  private dispatch(p: PoolState): void {
    while (p.head < p.queue.length && p.free.size > 0) {
      const r = p.free.values().next().value as SimRunner;
      const job = p.queue[p.head++]!;
      this.queuedTotal--;
      const j = this.jobs[job]!;
      this.waits[job] = this.now - j.arrival;
      if (r.activeJobs === 0) this.setState(r, 'busy');
      r.activeJobs++;
      r.jobsStarted++;
      r.idleSince = null;
      if (r.ephemeral || r.activeJobs >= r.slots) p.free.delete(r);
      this.heap.push({ t: this.now + j.duration, kind: 'done', r, job });
    }
    if (p.head > 4096 && p.head * 2 > p.queue.length) {
      p.queue = p.queue.slice(p.head);
      p.head = 0;
    }
  }

  private complete(r: SimRunner, _job: number): void {
    this.done++;
    r.activeJobs--;
    const p = r.pool;
    if (r.state === 'draining' || r.ephemeral) {
      if (r.activeJobs === 0) this.terminate(r); // drained, or an ephemeral runner exits after its job
      return;
    }
    if (r.activeJobs === 0) {
      r.idleSince = this.now;
      this.setState(r, 'idle');
    }
    const gap = p.input.claimGap ?? 0;
    if (gap > 0) this.heap.push({ t: this.now + gap, kind: 'free', r });
    else this.freed(r);
    if (p.warmable) this.wake(false, p);
  }

  /** The runner asks for work again: its free slot takes the oldest queued job. */
  private freed(r: SimRunner): void {
    if (r.state !== 'idle' && r.state !== 'busy') return;
    r.pool.free.add(r);
    this.dispatch(r.pool);
  }

  private finish(start: number, end: number): SimResult {
    for (const p of this.pools) for (const r of p.live) {
      if (r.state === 'idle') p.idleMs += end - (r.idleSince ?? end);
      this.account(r);
    }
    // jobs that never ran (a pool capped at 0 runners) waited until the end
    let unfinished = 0;
    for (const p of this.pools)
      for (let k = p.head; k < p.queue.length; k++) {
        this.waits[p.queue[k]!] = end - this.jobs[p.queue[k]!]!.arrival;
        unfinished++;
      }
    const pools: Record<string, PolicyFigures> = {};
    for (const p of this.pools) {
      const waits = this.waits.filter((_, i) => this.jobPool[i] === p.index);
      pools[p.input.config.name] = summarize(waits, this.opts.sloMs, { runnerMs: p.runnerMs, idleMs: p.idleMs, cost: p.cost, peak: p.peak, starts: p.starts, failedStarts: p.failedStarts });
    }
    const sum = (k: 'runnerMs' | 'idleMs' | 'cost' | 'starts' | 'failedStarts') => this.pools.reduce((n, p) => n + p[k], 0);
    return {
      ...summarize(this.waits, this.opts.sloMs, { runnerMs: sum('runnerMs'), idleMs: sum('idleMs'), cost: sum('cost'), peak: this.peakTotal, starts: sum('starts'), failedStarts: sum('failedStarts') }),
      unfinished,
      pools,
      series: this.series,
      start,
      end,
    };
  }

}
