/*
 * Calls the cloud providers make to their APIs (Kubernetes, ECS, EC2), by operation, and the
 * Prometheus counter that reports them: runyard_provider_api_calls_total{provider,operation}.
 * Each provider keeps its own tally (one per cluster connection or endpoint); the counter reads
 * them when /metrics is scraped, so the launch path pays one Map increment per call.
 */
import { Counter, type Registry } from 'prom-client';

/** A provider that counts its API calls (every attempt, retries included). */
export interface CountsApiCalls {
  readonly name: string;
  apiCalls(): Record<string, number>;
}

export function countsApiCalls(p: object): p is CountsApiCalls {
  return typeof (p as Partial<CountsApiCalls>).apiCalls === 'function';
}

/** API calls by operation. */
export class ApiCallTally {
  readonly calls = new Map<string, number>();
  count(op: string): void {
    this.calls.set(op, (this.calls.get(op) ?? 0) + 1);
  }
  /** Total calls, or those of the operations named. */
  total(...ops: string[]): number {
    let n = 0;
    for (const [op, c] of this.calls) if (!ops.length || ops.includes(op)) n += c;
    return n;
  }
  /** Several tallies (one per connection) summed by operation. */
  static sum(tallies: Iterable<ApiCallTally>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const t of tallies) for (const [op, n] of t.calls) out[op] = (out[op] ?? 0) + n;
    return out;
  }
}

/**
 * Registers runyard_provider_api_calls_total in `registry`: at each scrape it adds what every
 * counting provider did since the last one, so the counter only ever goes up.
 */
export function registerProviderApiCalls(registry: Registry, providers: () => Iterable<object>): Counter<'provider' | 'operation'> {
  const seen = new Map<string, number>();
  return new Counter({
    name: 'runyard_provider_api_calls_total',
    help: 'Calls made to a cloud provider API (Kubernetes, ECS, EC2), by provider and operation; retries count',
    labelNames: ['provider', 'operation'],
    registers: [registry],
    collect() {
      for (const p of providers()) {
        if (!countsApiCalls(p)) continue;
        for (const [operation, n] of Object.entries(p.apiCalls())) {
          const key = `${p.name}\u0000${operation}`;
          const last = seen.get(key) ?? 0;
          if (n > last) this.inc({ provider: p.name, operation }, n - last);
          seen.set(key, n);
        }
      }
    },
  });
}
