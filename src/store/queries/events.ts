import type { Queryable } from '../db.js';

export interface EventInput {
  kind: 'job' | 'runner' | 'pool' | 'token' | 'auth' | 'scheduler' | 'github';
  subject: string;
  from?: string | null;
  to?: string | null;
  reason?: string | null;
  actor?: string | null;
  data?: unknown;
}

export interface EventRow {
  id: number;
  at: Date;
  kind: string;
  subject: string;
  fromState: string | null;
  toState: string | null;
  reason: string | null;
  actor: string | null;
  data: unknown;
}

export async function recordEvents(q: Queryable, at: number, events: EventInput[]): Promise<void> {
  if (events.length === 0) return;
  await q.query(
    `insert into events (at, kind, subject, from_state, to_state, reason, actor, data)
     select $1, e.kind, e.subject, e.from_state, e.to_state, e.reason, e.actor, e.data
     from jsonb_to_recordset($2::jsonb) as e(kind text, subject text, from_state text, to_state text, reason text, actor text, data jsonb)`,
    [
      new Date(at),
      JSON.stringify(
        events.map((e) => ({ kind: e.kind, subject: e.subject, from_state: e.from ?? null, to_state: e.to ?? null, reason: e.reason ?? null, actor: e.actor ?? null, data: e.data ?? null })),
      ),
    ],
  );
}

export async function listEvents(
  q: Queryable,
  f: { kind?: string; subject?: string; before?: number; after?: number; limit: number },
): Promise<EventRow[]> {
  const rows = await q.query(
    `select id, at, kind, subject, from_state, to_state, reason, actor, data from events
     where ($1::text is null or kind = $1) and ($2::text is null or subject = $2)
       and ($3::bigint is null or id < $3) and ($4::bigint is null or id > $4)
     order by id ${f.after !== undefined ? 'asc' : 'desc'} limit $5`,
    [f.kind ?? null, f.subject ?? null, f.before ?? null, f.after ?? null, f.limit],
  );
  return rows.map((r) => ({
    id: r.id,
    at: r.at,
    kind: r.kind,
    subject: r.subject,
    fromState: r.from_state,
    toState: r.to_state,
    reason: r.reason,
    actor: r.actor,
    data: r.data,
  }));
}
