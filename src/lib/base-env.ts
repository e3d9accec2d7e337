/*
 * The environment a runner and its jobs start from: an allowlist, never the whole environment of
 * whoever started them. A control plane's own variables (PGPASSWORD, cloud credentials, its
 * tokens) must not reach an agent it launches, nor an agent's reach its jobs. What a pool or a
 * job needs comes from its `env` (and secrets); an agent can pass more of its own with
 * `--pass-env` (RUNYARD_PASS_ENV), e.g. a container image's JAVA_HOME.
 */

/** Names passed through, plus every LC_* locale variable. */
export const BASE_ENV_NAMES = ['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LANGUAGE', 'TZ', 'TMPDIR'];

/** What an agent itself needs beyond that: TLS trust for an https server. */
export const AGENT_ENV_NAMES = ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'RUNYARD_LOG_LEVEL'];

/** `env` reduced to the allowlist, plus names matching `extra` (exact, or a prefix ending in `*`). */
export function baseEnv(env: NodeJS.ProcessEnv, extra: readonly string[] = []): Record<string, string> {
  const allowed = (k: string) =>
    BASE_ENV_NAMES.includes(k) || k.startsWith('LC_') || extra.some((p) => (p.endsWith('*') ? k.startsWith(p.slice(0, -1)) : k === p));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && allowed(k)) out[k] = v;
  return out;
}

/**
 * RUNYARD_PASS_ENV for an agent a provider launches, one rule for all of them. In a container
 * or pod the runner has to itself (`container`, `kubernetes`) the environment is the image's,
 * the pool's and the platform's (the downward API), nothing of the control plane's: jobs may
 * have all of it (an image's JAVA_HOME and the like; RUNYARD_* is removed by the executor). An
 * ECS task's jobs get what ECS gives the task by name (its metadata endpoint, the task role's
 * credentials endpoint, the region). A pool's own `env` may set RUNYARD_PASS_ENV over it.
 */
export function launchedAgentPassEnv(runtime: 'container' | 'ecs-task'): { RUNYARD_PASS_ENV: string } {
  return { RUNYARD_PASS_ENV: runtime === 'container' ? '*' : 'ECS_CONTAINER_METADATA_URI*,AWS_CONTAINER_CREDENTIALS_*,AWS_EXECUTION_ENV,AWS_REGION,AWS_DEFAULT_REGION' };
}
