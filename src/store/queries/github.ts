/*
 * The GitHub source's reads and writes of its jobs' payload (`payload.github`, see
 * src/github/service.ts for what it holds) and of its own events. Job rows are returned as
 * stored; the caller maps them (toJob in src/queue/job.ts).
 */
import type { Queryable } from '../db.js';

/** The newest GitHub job whose JIT runner has this name, as a row. */
export async function githubJobRowByRunnerName(q: Queryable, runnerName: string): Promise<Record<string, any> | undefined> {
  const [row] = await q.query(`select * from jobs where source = 'github' and payload->'github'->>'runnerName' = $1 order by id desc limit 1`, [runnerName]);
  return row;
}

/** Records on the newest job of that runner that it took GitHub job `workflowJobId` at `at`; returns the job id. */
export async function markGithubRunnerAssigned(q: Queryable, runnerName: string, workflowJobId: number, at: number): Promise<number | undefined> {
  const [row] = await q.query<{ id: number }>(
    `update jobs set payload = jsonb_set(jsonb_set(payload, '{github,assignedJobId}', to_jsonb($2::bigint)), '{github,assignedAt}', to_jsonb($3::text))
     where id = (select id from jobs where source = 'github' and payload->'github'->>'runnerName' = $1 order by id desc limit 1)
     returning id`,
    [runnerName, workflowJobId, new Date(at).toISOString()],
  );
  return row?.id;
}

/** Running GitHub jobs started before `startedBefore` whose runner never took a GitHub job, as rows. */
export async function unassignedGithubJobRows(q: Queryable, startedBefore: number): Promise<Record<string, any>[]> {
  return q.query(
    `select * from jobs where source = 'github' and state = 'running' and started_at < $1 and coalesce(payload->'github'->>'assignedAt', '') = ''`,
    [new Date(startedBefore)],
  );
}

/** Repositories of GitHub jobs created since `since`, each with the org and installation its newest job named. */
export async function recentGithubRepos(q: Queryable, since: number): Promise<{ repo: string; org: string | null; inst: string | null }[]> {
  return q.query(
    `select distinct on (payload->'github'->>'repo') payload->'github'->>'repo' as repo, payload->'github'->>'org' as org, payload->'github'->>'installationId' as inst
     from jobs where source = 'github' and created_at > $1 and payload->'github'->>'repo' is not null
     order by payload->'github'->>'repo', id desc`,
    [new Date(since)],
  );
}

/** Whether a GitHub event about `subject` (e.g. `workflow_job:<id>`) was recorded already. */
export async function githubEventSeen(q: Queryable, subject: string): Promise<boolean> {
  return (await q.query(`select 1 from events where kind = 'github' and subject = $1 limit 1`, [subject])).length > 0;
}
