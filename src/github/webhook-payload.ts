/*
 * A GitHub `workflow_job` webhook payload: the parts runyard uses, checked by the rules the API
 * applies to the same values (signed is not the same as sane: the repository names GitHub API
 * paths, labels become a job's), and mapped to a WorkflowJobInfo.
 */
import { z } from 'zod';
import { formatPath } from '../config/load.js';
import { INT8_MAX, boundedInt, githubLogin, githubRepo, labels, safeString } from '../lib/validation.js';
import type { WorkflowJobInfo } from './service.js';

const text = (max: number) => safeString({ max }).nullish();
const account = z.object({ login: githubLogin.optional() });
/** The parts of a workflow_job webhook runyard uses, by the rules the API applies to the same values. */
const workflowJobPayload = z.object({
  workflow_job: z.object({
    id: boundedInt(1, INT8_MAX),
    run_id: boundedInt(1, INT8_MAX).nullish(),
    labels,
    runner_name: text(200),
    status: text(64),
    conclusion: text(64),
  }),
  repository: z.object({ full_name: githubRepo, owner: account.nullish() }),
  organization: account.nullish(),
  installation: z.object({ id: boundedInt(1, INT8_MAX) }).nullish(),
});

/** The workflow job of a payload, or the first field that is wrong and why. */
export function parseWorkflowJob(payload: unknown): { info: WorkflowJobInfo } | { field: string; message: string } {
  const checked = workflowJobPayload.safeParse(payload);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    return { field: formatPath(issue.path), message: issue.message };
  }
  const p = checked.data;
  return {
    info: {
      id: p.workflow_job.id,
      runId: p.workflow_job.run_id ?? null,
      labels: p.workflow_job.labels,
      runnerName: p.workflow_job.runner_name || null,
      status: p.workflow_job.status ?? null,
      conclusion: p.workflow_job.conclusion ?? null,
      repo: p.repository.full_name,
      org: p.organization?.login ?? p.repository.owner?.login ?? null,
      installationId: p.installation?.id ?? null,
    },
  };
}
