/*
 * The GitHub Actions job source. One runyard job per GitHub `workflow_job` that asks for a
 * self-hosted runner: the job runs the official Actions runner in JIT mode
 * (`run.sh --jitconfig $GITHUB_JIT_CONFIG`), so every GitHub job gets a fresh ephemeral runner.
 *
 *   queued (webhook or reconcile) ─▶ route labels to a pool ─▶ generate-jitconfig ─▶ enqueue
 *       (JIT config = job secret; idempotency key github:<workflow job id>)
 *   in_progress ─▶ the runner named in the event is marked assigned
 *   completed, never started ─▶ runyard job cancelled, GitHub runner removed
 *   reconcile ─▶ missed queued jobs, runners that never got a job, offline leftovers
 */
import { randomBytes } from 'node:crypto';
import type { AppContext } from '../app/context.js';
import { cancelJob, prepareSpecs, submitJobs } from '../app/jobs.js';
import { FINAL_STATES, toJob, type Job } from '../queue/job.js';
import { listPools } from '../store/queries/pools.js';
import { recordEvents } from '../store/queries/events.js';
import { githubEventSeen, githubJobRowByRunnerName, markGithubRunnerAssigned, recentGithubRepos, unassignedGithubJobRows } from '../store/queries/github.js';
import { findJobByIdempotencyKey } from '../queue/read.js';
import { GithubApiError, GithubClient } from './client.js';
import { githubSettings, type GithubSettings } from './settings.js';
import { isSelfHosted, routeLabels } from './routing.js';

/** What runyard keeps about a GitHub job, in the runyard job's payload under `github`. */
export interface GithubRef {
  workflowJobId: number;
  runId: number | null;
  repo: string;
  org: string | null;
  installationId: number | null;
  labels: string[];
  runnerId: number;
  runnerName: string;
  runnerScope: 'repo' | 'org';
  /** The GitHub job this runner took (in_progress), and when. */
  assignedJobId?: number | null;
  assignedAt?: string | null;
}

/** The parts of a workflow_job (webhook `workflow_job`, or REST job) runyard uses. */
export interface WorkflowJobInfo {
  id: number;
  runId: number | null;
  labels: string[];
  runnerName: string | null;
  status: string | null;
  conclusion: string | null;
  repo: string;
  org: string | null;
  installationId: number | null;
}

export type QueuedOutcome =
  | { status: 'created' | 'duplicate'; job: Job }
  | { status: 'ignored'; reason: string }
  | { status: 'unroutable'; reason: string };

/** The GitHub source of a server (one, built by server.ts: it holds the token cache and rate-limit state). */
export class GithubSource {
  readonly client: GithubClient;
  private lastReconcile = -Infinity;
  /** webhook deliveries being handled on this server */
  private inFlight = new Set<string>();

  constructor(private ctx: AppContext) {
    this.client = new GithubClient(() => this.settings, ctx.log, () => ctx.clock.now());
  }

  /**
   * A webhook delivery is handled once: false for one being handled here or recorded already
   * (GitHub redelivers). Until releaseDelivery(), a second copy is a duplicate.
   */
  async takeDelivery(delivery: string): Promise<boolean> {
    if (this.inFlight.has(delivery)) return false;
    if (await githubEventSeen(this.ctx.db, `delivery:${delivery}`)) return false;
    this.inFlight.add(delivery);
    return true;
  }

  releaseDelivery(delivery: string): void {
    this.inFlight.delete(delivery);
  }

  /** Records what a delivery did; from then on its redeliveries are duplicates (an empty id records nothing). */
  async deliveryDone(delivery: string, reason: string): Promise<void> {
    if (delivery) await recordEvents(this.ctx.db, this.ctx.clock.now(), [{ kind: 'github', subject: `delivery:${delivery}`, reason, actor: 'github' }]);
  }

  /** The periodic step (maintenance): a reconcile when GitHub is configured. */
  async tick(now: number) {
    if (!githubSettings(this.ctx.config)) return;
    return this.reconcile(now);
  }

  get settings(): GithubSettings {
    const s = githubSettings(this.ctx.config);
    if (!s) throw new GithubApiError('GitHub is not configured (github block in runyard.yaml)', 0);
    return s;
  }

  async record(subject: string, reason: string, data?: unknown) {
    await recordEvents(this.ctx.db, this.ctx.clock.now(), [{ kind: 'github', subject: subject.slice(0, 200), reason: reason.slice(0, 1000), actor: 'github', data }]).catch(() => {});
  }

  async jobByWorkflowJob(id: number): Promise<Job | undefined> {
    return findJobByIdempotencyKey(this.ctx.db, `github:${id}`);
  }

  async jobByRunnerName(name: string): Promise<Job | undefined> {
    const row = await githubJobRowByRunnerName(this.ctx.db, name);
    return row ? toJob(row) : undefined;
  }

  /** A queued GitHub job: route it, register a JIT runner for it, enqueue the runyard job. */
  async queued(wj: WorkflowJobInfo, opts: { maxWaitMs?: number } = {}): Promise<QueuedOutcome> {
    if (!isSelfHosted(wj.labels)) return { status: 'ignored', reason: 'labels do not include self-hosted' };
    const existing = await this.jobByWorkflowJob(wj.id);
    if (existing) return { status: 'duplicate', job: existing };
    const route = routeLabels(await listPools(this.ctx.db), wj.labels);
    if (!route) {
      const reason = `no pool serves labels ${JSON.stringify(wj.labels)} (GitHub job ${wj.id} in ${wj.repo}); add a pool whose labels, class and image cover them`;
      this.ctx.log.warn({ workflowJobId: wj.id, repo: wj.repo, labels: wj.labels }, 'GitHub job matches no pool');
      await this.record(`workflow_job:${wj.id}`, reason, { repo: wj.repo, labels: wj.labels, outcome: 'unroutable' });
      return { status: 'unroutable', reason };
    }
    const { pool, image } = route;
    const s = this.settings;
    const scope: 'repo' | 'org' = s.scope === 'org' && wj.org ? 'org' : 'repo';
    const runnerName = `${s.runnerPrefix}-${wj.id}-${randomBytes(3).toString('hex')}`;
    const labels = dedupe([...wj.labels.filter((l) => l.toLowerCase() !== 'self-hosted'), ...pool.config.labels]);
    const target = { installationId: wj.installationId, repo: wj.repo, org: wj.org ?? undefined };
    const base = scope === 'org' ? `/orgs/${wj.org}` : `/repos/${wj.repo}`;
    const jit = await this.client.request(
      'POST',
      `${base}/actions/runners/generate-jitconfig`,
      { name: runnerName, runner_group_id: s.runnerGroupId, labels: labels.length ? labels : [pool.name], work_folder: '_work' },
      target,
      opts,
    );
    const runnerId = Number(jit?.runner?.id);
    if (!jit?.encoded_jit_config || !Number.isFinite(runnerId)) throw new GithubApiError('generate-jitconfig returned no encoded_jit_config', 502);
    const ref: GithubRef = {
      workflowJobId: wj.id,
      runId: wj.runId,
      repo: wj.repo,
      org: wj.org,
      installationId: wj.installationId,
      labels: wj.labels,
      runnerId,
      runnerName,
      runnerScope: scope,
      assignedJobId: null,
      assignedAt: null,
    };
    const env: Record<string, string> = { RUNYARD_GITHUB_RUNNER: s.runnerPath, RUNYARD_GITHUB_RUNNER_NAME: runnerName, GITHUB_REPOSITORY: wj.repo };
    if (s.runnerVersion) env.RUNYARD_GITHUB_RUNNER_VERSION = s.runnerVersion;
    let results;
    try {
      const specs = await prepareSpecs(
        this.ctx,
        [
          {
            pool: pool.name,
            commands: ['exec "$RUNYARD_GITHUB_RUNNER" --jitconfig "$GITHUB_JIT_CONFIG"'],
            env,
            secrets: { GITHUB_JIT_CONFIG: String(jit.encoded_jit_config) },
            labels: wj.labels,
            ...(image ? { image } : {}),
            payload: { github: ref },
            idempotencyKey: `github:${wj.id}`,
          },
        ],
        'github',
      );
      specs[0]!.externalId = String(wj.id);
      results = await submitJobs(this.ctx, specs, 'github');
    } catch (err) {
      await this.removeRunner(ref).catch(() => {});
      throw err;
    }
    const r = results[0]!;
    if (!r.created) {
      // A redelivery raced this one and won: the runner registered here is not needed.
      await this.removeRunner(ref).catch((err) => this.ctx.log.warn({ err, runnerName }, 'could not remove surplus GitHub runner'));
      return { status: 'duplicate', job: r.job };
    }
    await this.record(`workflow_job:${wj.id}`, `queued as job ${r.job.id} on pool ${pool.name} (runner ${runnerName})`, { jobId: r.job.id, pool: pool.name, runnerName, runnerId });
    return { status: 'created', job: r.job };
  }

  /** The runner named in the event took a GitHub job (it may be another job than its own: runners are fungible). */
  async inProgress(wj: WorkflowJobInfo): Promise<number | null> {
    if (!wj.runnerName) return null;
    const id = await markGithubRunnerAssigned(this.ctx.db, wj.runnerName, wj.id, this.ctx.clock.now());
    if (id === undefined) return null;
    await recordEvents(this.ctx.db, this.ctx.clock.now(), [{ kind: 'job', subject: String(id), reason: `GitHub runner ${wj.runnerName} took GitHub job ${wj.id}`, actor: 'github' }]);
    this.ctx.bus.emit('job-changed', id);
    return id;
  }

  /**
   * A GitHub job finished. Its runner (if it had one) exits by itself. A job that never ran on
   * a runner (cancelled while queued) cancels runyard's job and removes the unused runner.
   */
  async completed(wj: WorkflowJobInfo): Promise<{ cancelled: number | null }> {
    if (wj.runnerName) return { cancelled: null };
    const own = await this.jobByWorkflowJob(wj.id);
    if (!own || FINAL_STATES.includes(own.state)) return { cancelled: null };
    const ref = (own.payload as { github?: GithubRef } | null)?.github;
    if (ref?.assignedAt) return { cancelled: null }; // its runner is running another GitHub job
    await this.cancel(own, `GitHub job ${wj.id} completed (${wj.conclusion ?? 'no conclusion'}) before a runner took it`);
    if (ref) await this.removeRunner(ref).catch((err) => this.ctx.log.warn({ err, runner: ref.runnerName }, 'could not remove GitHub runner'));
    return { cancelled: own.id };
  }

  private async cancel(job: Job, reason: string) {
    try {
      await cancelJob(this.ctx, job.id, 'github');
    } catch (err) {
      if ((err as { status?: number }).status !== 409) throw err; // already finished: nothing to cancel
    }
    await recordEvents(this.ctx.db, this.ctx.clock.now(), [{ kind: 'job', subject: String(job.id), reason, actor: 'github' }]);
    this.ctx.bus.emit('job-changed', job.id);
  }

  /** Removes a JIT runner from GitHub; one already gone counts as removed. */
  async removeRunner(ref: Pick<GithubRef, 'runnerId' | 'runnerScope' | 'repo' | 'org' | 'installationId' | 'runnerName'>) {
    const base = ref.runnerScope === 'org' && ref.org ? `/orgs/${ref.org}` : `/repos/${ref.repo}`;
    try {
      await this.client.request('DELETE', `${base}/actions/runners/${ref.runnerId}`, undefined, { installationId: ref.installationId, repo: ref.repo, org: ref.org ?? undefined });
    } catch (err) {
      if (err instanceof GithubApiError && err.status === 404) return;
      throw err;
    }
  }

  /**
   * Reconcile, throttled to `reconcileInterval`: runners that registered but got no job within
   * `assignTimeout` are removed and their jobs cancelled; queued GitHub jobs without a runyard
   * job (missed webhooks) are queued; offline runyard runners GitHub still lists are removed.
   */
  async reconcile(now: number, force = false) {
    const s = this.settings;
    if (!force && now - this.lastReconcile < s.reconcileInterval) return { skipped: true };
    this.lastReconcile = now;
    const report = { skipped: false, unassigned: [] as number[], queued: [] as number[], removedRunners: [] as string[], errors: [] as string[] };

    const stale = await unassignedGithubJobRows(this.ctx.db, now - s.assignTimeout);
    for (const row of stale) {
      const job = toJob(row);
      const ref = (job.payload as { github?: GithubRef }).github;
      try {
        if (ref) await this.removeRunner(ref);
        await this.cancel(job, `GitHub runner ${ref?.runnerName ?? '?'} got no GitHub job within ${Math.round(s.assignTimeout / 1000)}s; removed`);
        report.unassigned.push(job.id);
      } catch (err) {
        report.errors.push(`job ${job.id}: ${(err as Error).message}`);
      }
    }

    const known = await recentGithubRepos(this.ctx.db, now - 7 * 86_400_000);
    const repos = new Map<string, { org: string | null; installationId: number | null }>();
    for (const r of known) repos.set(r.repo, { org: r.org, installationId: r.inst ? Number(r.inst) : null });
    for (const r of s.repositories) if (!repos.has(r)) repos.set(r, { org: null, installationId: null });

    const orgsDone = new Set<string>();
    for (const [repo, info] of repos) {
      const target = { installationId: info.installationId, repo };
      try {
        const runs = await this.client.request('GET', `/repos/${repo}/actions/runs?status=queued&per_page=100`, undefined, target);
        for (const run of runs?.workflow_runs ?? []) {
          const jobs = await this.client.request('GET', `/repos/${repo}/actions/runs/${run.id}/jobs?filter=latest&per_page=100`, undefined, target);
          for (const j of jobs?.jobs ?? []) {
            if (j.status !== 'queued' || !isSelfHosted(j.labels ?? [])) continue;
            if (await this.jobByWorkflowJob(j.id)) continue;
            const wj: WorkflowJobInfo = {
              id: Number(j.id),
              runId: Number(j.run_id ?? run.id),
              labels: j.labels ?? [],
              runnerName: null,
              status: 'queued',
              conclusion: null,
              repo,
              org: info.org ?? run.repository?.owner?.login ?? repo.split('/')[0]!,
              installationId: info.installationId,
            };
            if (routeLabels(await listPools(this.ctx.db), wj.labels) === undefined) {
              if (await githubEventSeen(this.ctx.db, `workflow_job:${wj.id}`)) continue; // recorded once already
            }
            const out = await this.queued(wj);
            if (out.status === 'created') report.queued.push(out.job.id);
          }
        }
        const scopeOrg = s.scope === 'org' && info.org;
        if (scopeOrg && orgsDone.has(info.org!)) continue;
        if (scopeOrg) orgsDone.add(info.org!);
        const path = scopeOrg ? `/orgs/${info.org}/actions/runners?per_page=100` : `/repos/${repo}/actions/runners?per_page=100`;
        const listed = await this.client.request('GET', path, undefined, { ...target, org: info.org ?? undefined });
        for (const r of listed?.runners ?? []) {
          if (r.status !== 'offline' || !String(r.name).startsWith(`${s.runnerPrefix}-`)) continue;
          const job = await this.jobByRunnerName(r.name);
          if (job && !FINAL_STATES.includes(job.state)) continue; // not started yet, or still running
          await this.removeRunner({ runnerId: Number(r.id), runnerScope: scopeOrg ? 'org' : 'repo', repo, org: info.org, installationId: info.installationId, runnerName: r.name });
          report.removedRunners.push(r.name);
        }
      } catch (err) {
        report.errors.push(`${repo}: ${(err as Error).message}`);
      }
    }
    if (report.errors.length) {
      this.ctx.log.warn({ errors: report.errors }, 'GitHub reconcile had errors');
      await this.record('reconcile', `reconcile errors: ${report.errors.join('; ')}`);
    }
    if (report.queued.length || report.unassigned.length || report.removedRunners.length) this.ctx.log.info(report, 'GitHub reconcile');
    return report;
  }
}

function dedupe(labels: string[]): string[] {
  const seen = new Set<string>();
  return labels.filter((l) => {
    const k = l.toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
