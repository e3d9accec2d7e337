/** Runs every policy over one trace and gathers what the reports show. */
import type { PoolConfig } from '../config/schema.js';
import { Simulation, type SimResult } from './simulation.js';
import { policyPools, simPools, type Policy, type SimSpec } from './spec.js';
import { describeLatency, type Fitted } from './provider-model.js';
import { waitFigures, type PolicyFigures } from './figures.js';
import type { TraceJob } from './trace.js';

export interface PolicyReport {
  name: string;
  pools: PoolConfig[];
  result: SimResult;
}

export interface Report {
  seed: number;
  sloMs: number;
  jobs: number;
  from: number;
  to: number;
  latency: Record<string, string>;
  /** the queue wait the trace recorded, when it has one */
  recorded: PolicyFigures['wait'] | undefined;
  policies: PolicyReport[];
}

export interface CompareInput {
  base: Record<string, unknown>[];
  spec: SimSpec;
  policies: Policy[];
  jobs: TraceJob[];
  fitted?: Fitted;
  end?: number;
  onProgress?: (policy: string, fraction: number) => void;
}

export function compare(input: CompareInput): Report {
  const { spec, jobs } = input;
  const policies = input.policies.length ? input.policies : [{ name: 'current', pools: {} }];
  const out: PolicyReport[] = [];
  let latency: Record<string, string> = {};
  policies.forEach((policy, i) => {
    const pools = policyPools(input.base, policy, `policies[${i}] (${policy.name})`);
    const sim = simPools(pools, spec, input.fitted);
    if (i === 0) latency = Object.fromEntries(sim.map((p) => [p.config.name, describeLatency(p.latency)]));
    const result = new Simulation(sim, jobs, {
      seed: spec.seed,
      tickMs: spec.tick,
      sloMs: spec.slo,
      warmupMs: spec.warmup,
      ...(input.end !== undefined ? { end: input.end } : {}),
      onProgress: input.onProgress ? (p) => input.onProgress!(policy.name, (p.now - p.start) / Math.max(1, p.lastArrival - p.start)) : undefined,
    }).run();
    out.push({ name: policy.name, pools, result });
  });
  const measured = jobs.filter((j) => j.wait !== undefined).map((j) => j.wait!);
  return {
    seed: spec.seed,
    sloMs: spec.slo,
    jobs: jobs.length,
    from: jobs[0]?.arrival ?? 0,
    to: jobs[jobs.length - 1]?.arrival ?? 0,
    latency,
    recorded: measured.length ? waitFigures(measured) : undefined,
    policies: out,
  };
}
