/*
 * Job traces: what the simulator replays. One job is its arrival, its pool (or the labels that
 * route it to one), how long it ran and how it ended; `wait` is the queue wait measured when
 * the trace was recorded, shown next to the simulated one.
 *
 * Formats: JSONL (one object a line), CSV (a header row naming the same fields) and GitHub's
 * workflow-job JSON (`{jobs: [...]}` as the REST API lists them, an array of them, or JSONL of
 * `workflow_job` webhook deliveries).
 */
import { parseDuration } from '../lib/duration.js';
import { parseCsv } from './csv.js';

export interface TraceJob {
  /** epoch ms */
  arrival: number;
  pool: string | undefined;
  labels: string[];
  /** ms the job ran */
  duration: number;
  outcome: string;
  /** ms it waited when the trace was recorded, when known */
  wait?: number;
}

export class TraceError extends Error {
  constructor(message: string, readonly where: string) {
    super(`${where}: ${message}`);
  }
}

function time(v: unknown, field: string, where: string): number {
  const t = typeof v === 'number' ? v : typeof v === 'string' ? (/^\d+$/.test(v) ? Number(v) : Date.parse(v)) : NaN;
  if (!Number.isFinite(t)) throw new TraceError(`${field} must be an ISO time or epoch milliseconds, got ${JSON.stringify(v)}`, where);
  return t;
}

function ms(v: unknown, field: string, where: string): number {
  const d = typeof v === 'number' || typeof v === 'string' ? parseDuration(v) : undefined;
  if (d === undefined) throw new TraceError(`${field} must be a duration (90s, 5m) or milliseconds, got ${JSON.stringify(v)}`, where);
  return d;
}

const labelList = (v: unknown): string[] =>
  Array.isArray(v) ? v.map(String) : typeof v === 'string' && v.trim() ? v.split(/[;,\s]+/).filter(Boolean) : [];

/** One trace record (JSONL object or CSV row) to a job. */
export function traceJob(o: Record<string, unknown>, where: string): TraceJob {
  if (o.arrival === undefined || o.arrival === '') throw new TraceError('arrival is missing', where);
  if (o.duration === undefined || o.duration === '') throw new TraceError('duration is missing', where);
  const pool = o.pool === undefined || o.pool === '' ? undefined : String(o.pool);
  const labels = labelList(o.labels);
  if (pool === undefined && labels.length === 0) throw new TraceError('needs a pool or labels that route it to one', where);
  const job: TraceJob = { arrival: time(o.arrival, 'arrival', where), pool, labels, duration: ms(o.duration, 'duration', where), outcome: o.outcome ? String(o.outcome) : 'succeeded' };
  if (o.wait !== undefined && o.wait !== '') job.wait = ms(o.wait, 'wait', where);
  return job;
}

/** A GitHub workflow job (REST `jobs[]` item or a webhook's `workflow_job`); undefined when it never ran. */
function githubJob(o: Record<string, any>, where: string): TraceJob | undefined {
  const j = o.workflow_job ?? o;
  if (!j.created_at || !j.started_at || !j.completed_at) return undefined; // queued or cancelled before it ran
  const created = time(j.created_at, 'created_at', where);
  const started = time(j.started_at, 'started_at', where);
  return {
    arrival: created,
    pool: undefined,
    labels: labelList(j.labels),
    duration: Math.max(0, time(j.completed_at, 'completed_at', where) - started),
    outcome: j.conclusion ?? 'succeeded',
    wait: Math.max(0, started - created),
  };
}

export type TraceFormat = 'jsonl' | 'csv' | 'github';

/** Guesses the format from the file name, then the content. */
export function detectFormat(name: string, text: string): TraceFormat {
  if (/\.csv$/i.test(name)) return 'csv';
  const head = text.trimStart();
  if (head.startsWith('[') || (head.startsWith('{') && /"jobs"\s*:|"workflow_job"\s*:|"runner_name"\s*:/.test(head.slice(0, 4000)))) return 'github';
  if (head.startsWith('{')) return 'jsonl';
  return 'csv';
}

/** Parses a trace; jobs come back sorted by arrival (ties keep file order). */
export function parseTrace(text: string, format: TraceFormat, name = 'trace'): { jobs: TraceJob[]; skipped: number } {
  const jobs: TraceJob[] = [];
  let skipped = 0;
  if (format === 'csv') {
    const rows = parseCsv(text);
    const header = rows.shift()?.map((h) => h.trim());
    if (!header || !header.includes('arrival')) throw new TraceError('the first row must name the columns: arrival,pool,labels,duration,outcome[,wait]', `${name}:1`);
    rows.forEach((r, i) => {
      if (r.length === 1 && r[0] === '') return;
      jobs.push(traceJob(Object.fromEntries(header.map((h, k) => [h, r[k] ?? ''])), `${name}:${i + 2}`));
    });
  } else if (format === 'github') {
    const head = text.trimStart();
    let items: any[];
    if (head.startsWith('[')) items = JSON.parse(text);
    else {
      try {
        const doc = JSON.parse(text);
        items = Array.isArray(doc.jobs) ? doc.jobs : [doc];
      } catch {
        items = text.split('\n').filter((l) => l.trim()).map((l, i) => parseJsonLine(l, `${name}:${i + 1}`));
      }
    }
    items.forEach((o, i) => {
      const j = githubJob(o, `${name} job ${i + 1}`);
      if (j) jobs.push(j);
      else skipped++;
    });
  } else {
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      jobs.push(traceJob(parseJsonLine(line, `${name}:${i + 1}`), `${name}:${i + 1}`));
    });
  }
  jobs.sort((a, b) => a.arrival - b.arrival);
  return { jobs, skipped };
}

function parseJsonLine(line: string, where: string): Record<string, unknown> {
  try {
    const v = JSON.parse(line);
    if (v && typeof v === 'object' && !Array.isArray(v)) return v;
  } catch {
    // reported below
  }
  throw new TraceError('not a JSON object', where);
}

/** Writes jobs as JSONL (what `--export` and the store reader give). */
export function toJsonl(jobs: TraceJob[]): string {
  return jobs
    .map((j) => JSON.stringify({ arrival: new Date(j.arrival).toISOString(), pool: j.pool, labels: j.labels, duration: j.duration, outcome: j.outcome, ...(j.wait !== undefined ? { wait: j.wait } : {}) }))
    .join('\n') + (jobs.length ? '\n' : '');
}
