import { z } from 'zod';
import { duration } from '../config/schema.js';
import type { Config } from '../config/schema.js';

/**
 * The `github` config block as the GitHub job source reads it. The keys beyond the five in
 * src/config/schema.ts (webhookSecret, appId, privateKeyPath, token, apiUrl) get their defaults
 * here, so this works before and after the config schema learns them.
 */
export const githubExtraSchema = z.object({
  /** The Actions runner's run script (or a stand-in), as the job's shell sees it (relative: the job's workdir). */
  runnerPath: z.string().min(1).default('./actions-runner/run.sh'),
  /** Actions runner version, exported to the job as RUNYARD_GITHUB_RUNNER_VERSION (for a setup step that fetches it). */
  runnerVersion: z.string().min(1).optional(),
  /** Register JIT runners on the repository (`repo`) or on its organisation (`org`). */
  scope: z.enum(['repo', 'org']).default('repo'),
  /** Runner group of JIT runners (org scope; 1 = Default). */
  runnerGroupId: z.number().int().min(1).default(1),
  /** Prefix of the runner names runyard registers; reconcile only removes runners with it. */
  runnerPrefix: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/).default('runyard'),
  /** A runner that registered but got no GitHub job within this time is removed and its job cancelled. */
  assignTimeout: duration.default(300_000),
  /** How often the reconcile pass talks to GitHub (it runs on the scheduler tick, throttled to this). */
  reconcileInterval: duration.default(60_000),
  /** Repositories (owner/name) reconcile scans besides those it has seen jobs from. */
  repositories: z.array(z.string().regex(/^[\w.-]+\/[\w.-]+$/)).default([]),
  /** Longest wait for a rate limit to reset before a call fails instead. */
  maxRateLimitWait: duration.default(60_000),
});

export interface GithubSettings extends z.output<typeof githubExtraSchema> {
  webhookSecret?: string;
  appId?: string;
  privateKeyPath?: string;
  token?: string;
  apiUrl: string;
}

/** Reads the settings on every call, so a config changed in place takes effect. */
export function githubSettings(config: Config): GithubSettings | undefined {
  const g = config.github as (Record<string, unknown> & NonNullable<Config['github']>) | undefined;
  if (!g) return undefined;
  const extra = githubExtraSchema.parse(Object.fromEntries(Object.entries(g).filter(([k]) => k in githubExtraSchema.shape)));
  return {
    ...extra,
    webhookSecret: g.webhookSecret,
    appId: g.appId === undefined ? undefined : String(g.appId),
    privateKeyPath: g.privateKeyPath,
    token: g.token,
    apiUrl: (g.apiUrl ?? 'https://api.github.com').replace(/\/+$/, ''),
  };
}
