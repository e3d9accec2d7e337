/*
 * runyard_provider_api_calls_total{provider,operation}: read from the providers' own tallies at
 * each scrape, only ever going up, and absent for providers that make no API calls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { ApiCallTally, registerProviderApiCalls } from '../src/providers/api-calls.js';

test('the counter follows the tallies across scrapes; a provider without API calls is left out', async () => {
  const a = new ApiCallTally();
  const b = new ApiCallTally();
  const kube = { name: 'kubernetes', apiCalls: () => ApiCallTally.sum([a, b]) };
  const processProvider = { name: 'process' };
  const registry = new Registry();
  registerProviderApiCalls(registry, () => [kube, processProvider]);
  const value = async (operation: string) => {
    const m = (await registry.getSingleMetric('runyard_provider_api_calls_total')!.get()).values.find((v) => v.labels.operation === operation);
    return m?.value ?? 0;
  };
  a.count('create pod');
  b.count('create pod');
  a.count('create secret');
  assert.equal(await value('create pod'), 2, 'two connections summed');
  assert.equal(await value('create secret'), 1);
  assert.equal(await value('create pod'), 2, 'a second scrape adds nothing new');
  b.count('create pod');
  assert.equal(await value('create pod'), 3);
  const text = await registry.metrics();
  assert.match(text, /^runyard_provider_api_calls_total\{provider="kubernetes",operation="create pod"\} 3$/m);
  assert.doesNotMatch(text, /provider="process"/);
  assert.equal(a.total('create pod', 'create secret'), 2);
  assert.equal(a.total(), 2);
});
