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

/**
 * Text PostgreSQL can store: NUL (refused by text and jsonb) shown as `\0`, lone surrogates as
 * U+FFFD. An event records what was refused, so it must never fail on what it records.
 */
export function storable<T>(v: T): T {
  if (typeof v === 'string') return wellFormed(v.replace(/\0/g, '\\0')) as T;
  if (Array.isArray(v)) return v.map(storable) as T;
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) return Object.fromEntries(Object.entries(v).map(([k, x]) => [storable(k), storable(x)])) as T;
  return v;
}

const wellFormed = (s: string) => s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');

export async function recordEvents(q: Queryable, at: number, events: EventInput[]): Promise<void> {
  if (events.length === 0) return;
  events = events.map(storable);
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

/** One event, returning its id (for rows whose data is updated later, see RefusalAudit). */
export async function insertEvent(q: Queryable, at: number, e: EventInput): Promise<number> {
  const c = storable(e);
  const [row] = await q.query<{ id: number }>(
    'insert into events (at, kind, subject, from_state, to_state, reason, actor, data) values ($1, $2, $3, $4, $5, $6, $7, $8) returning id',
    [new Date(at), c.kind, c.subject, c.from ?? null, c.to ?? null, c.reason ?? null, c.actor ?? null, c.data === undefined ? null : JSON.stringify(c.data)],
  );
  return Number(row!.id);
}

export async function updateEventData(q: Queryable, id: number, data: unknown): Promise<void> {
  await q.query('update events set data = $2 where id = $1', [id, JSON.stringify(storable(data))]);
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

/** The newest event's id (0 for none): where a reader that wants only news starts. */
export async function lastEventId(q: Queryable): Promise<number> {
  const [row] = await q.query<{ id: number | string | null }>('select max(id) as id from events');
  return Number(row?.id ?? 0);
}

/** Which subjects changed: kind and subject of up to `limit` events after id `after`, oldest first. */
export async function eventSubjectsAfter(q: Queryable, after: number, limit: number): Promise<{ id: number | string; kind: string; subject: string }[]> {
  return q.query(`select id, kind, subject from events where id > $1 order by id limit $2`, [after, limit]);
}
