import type { TestServer } from './server.js';

/** The sum of a metric's samples whose labels include `labels`, as GET /metrics shows them (0 when absent). */
export async function metricValue(t: Pick<TestServer, 'api'>, name: string, labels: Record<string, string> = {}): Promise<number> {
  const { status, body } = await t.api('GET', '/metrics', undefined, { token: null });
  if (status !== 200) throw new Error(`GET /metrics answered ${status}`);
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of String(body).split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').split(/,(?=[a-zA-Z_]+=")/);
    if (want.every((w) => have.includes(w))) sum += Number(m[3]);
  }
  return sum;
}

/** runyard_provider_api_calls_total{provider,operation}. */
export const apiCallsMetric = (t: Pick<TestServer, 'api'>, provider: string, operation: string) => metricValue(t, 'runyard_provider_api_calls_total', { provider, operation });
