/*
 * CPU accounting from /proc: where the machine's CPU went during a measurement — this process
 * (the server), the agents and the jobs they ran (their reaped children), PostgreSQL backends
 * serving our database, and everything else on the machine.
 */
import { readFileSync, readdirSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

export interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  /** own user+system CPU, ms */
  self: number;
  /** CPU of reaped children (cutime+cstime), ms */
  children: number;
  rssBytes: number;
}

export function readProcStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const f = text.slice(close + 2).split(' ');
    // fields after comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
    return {
      pid,
      ppid: Number(f[1]),
      comm,
      self: (Number(f[11]) + Number(f[12])) * TICK_MS,
      children: (Number(f[13]) + Number(f[14])) * TICK_MS,
      rssBytes: Number(f[21]) * 4096,
    };
  } catch {
    return undefined;
  }
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

export function allPids(): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
}

/** Machine-wide busy and total CPU time in ms (all cores), from /proc/stat. */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = v as [number, number, number, number, number, number, number, number];
  const busy = user + nice + system + irq + softirq + (steal ?? 0);
  return { busy: busy * TICK_MS, total: (busy + idle + iowait) * TICK_MS };
}

/** PostgreSQL backends serving one database (their process title names it). */
export function pgBackendPids(dbName: string): number[] {
  const out: number[] = [];
  for (const pid of allPids()) {
    const s = readProcStat(pid);
    if (!s || s.comm !== 'postgres') continue;
    if (cmdline(pid).includes(` ${dbName} `)) out.push(pid);
  }
  return out;
}

/**
 * Samples CPU of named groups of processes over an interval. Backends and agents come and go,
 * so groups are re-resolved at every sample and each pid's CPU counted from when it was first
 * seen (or from zero when it started during the interval).
 */
export class CpuSampler {
  private seen = new Map<number, { group: string; firstSelf: number; firstChildren: number; lastSelf: number; lastChildren: number }>();
  private timer: NodeJS.Timeout | undefined;
  private startMachine = machineCpu();
  private endMachine: { busy: number; total: number } | undefined;
  private t0 = Date.now();
  private t1 = 0;

  constructor(private groups: () => Record<string, number[]>, private intervalMs = 500) {}

  start(): this {
    this.startMachine = machineCpu();
    this.t0 = Date.now();
    this.sample(true);
    this.timer = setInterval(() => this.sample(false), this.intervalMs);
    this.timer.unref();
    return this;
  }

  private sample(initial: boolean) {
    for (const [group, pids] of Object.entries(this.groups())) {
      for (const pid of pids) {
        const s = readProcStat(pid);
        if (!s) continue;
        const prev = this.seen.get(pid);
        if (prev) {
          prev.lastSelf = s.self;
          prev.lastChildren = s.children;
        } else this.seen.set(pid, { group, firstSelf: initial ? s.self : 0, firstChildren: initial ? s.children : 0, lastSelf: s.self, lastChildren: s.children });
      }
    }
  }

  /**
   * CPU per group in core-seconds and in % of one core (own CPU, and separately the CPU of
   * children the group's processes reaped: for agents, the job processes), plus the machine.
   */
  stop(): { wallS: number; groups: Record<string, { cpuS: number; pctOfCore: number; childrenCpuS: number }>; machineBusyPct: number } {
    this.sample(false);
    clearInterval(this.timer);
    this.endMachine = machineCpu();
    this.t1 = Date.now();
    const wallS = (this.t1 - this.t0) / 1000;
    const groups: Record<string, { cpuS: number; pctOfCore: number; childrenCpuS: number }> = {};
    for (const v of this.seen.values()) {
      const g = (groups[v.group] ??= { cpuS: 0, pctOfCore: 0, childrenCpuS: 0 });
      g.cpuS += (v.lastSelf - v.firstSelf) / 1000;
      g.childrenCpuS += (v.lastChildren - v.firstChildren) / 1000;
    }
    for (const g of Object.values(groups)) g.pctOfCore = (g.cpuS / wallS) * 100;
    const m = this.endMachine;
    const machineBusyPct = ((m.busy - this.startMachine.busy) / Math.max(1, m.total - this.startMachine.total)) * 100;
    return { wallS, groups, machineBusyPct };
  }
}
