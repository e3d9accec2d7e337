/*
 * Scheduled warm pools: `minIdle` by time of day and day of week in an IANA time zone.
 *
 *   minIdle: 0                      # outside every window
 *   minIdleSchedule:
 *     timeZone: Europe/Berlin
 *     windows:
 *       - { days: mon-fri, from: "08:00", to: "19:00", minIdle: 4 }
 *
 * Local time comes from Intl (the runtime's time zone database), so daylight saving is followed
 * without a dependency. A window whose `to` is not after its `from` runs past midnight into the
 * next day (`days` name the day it starts). Where windows overlap, the highest minIdle applies.
 */
import { z } from 'zod';

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
const ALIASES: Record<string, number[]> = { daily: [0, 1, 2, 3, 4, 5, 6], weekdays: [1, 2, 3, 4, 5], weekends: [0, 6] };

/** "mon-fri", "sat,sun", "weekdays", "daily", or a list of them: the days of week (0 = Sunday). */
export function parseDays(input: string | string[]): number[] | string {
  const parts = (Array.isArray(input) ? input : [input]).flatMap((s) => s.split(',')).map((s) => s.trim().toLowerCase());
  const days = new Set<number>();
  for (const part of parts) {
    if (ALIASES[part]) {
      ALIASES[part]!.forEach((d) => days.add(d));
      continue;
    }
    const m = /^([a-z]{3})(?:-([a-z]{3}))?$/.exec(part);
    const a = m ? DAY_NAMES.indexOf(m[1] as (typeof DAY_NAMES)[number]) : -1;
    const b = m?.[2] ? DAY_NAMES.indexOf(m[2] as (typeof DAY_NAMES)[number]) : a;
    if (a < 0 || b < 0) return `unknown day ${JSON.stringify(part)}: use mon…sun, a range like mon-fri, weekdays, weekends or daily`;
    for (let d = a; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === b) break;
    }
  }
  return [...days].sort();
}

const CLOCK = /^([01]\d|2[0-3]):[0-5]\d$|^24:00$/;
const minutes = (s: string) => Number(s.slice(0, 2)) * 60 + Number(s.slice(3));
const clockTime = z.string().regex(CLOCK, 'must be a time HH:MM (00:00 to 24:00)');

export function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

// Validated but kept as written (no transform), so a pool's config reads back as it was applied.
const windowSchema = z.strictObject({
  days: z
    .union([z.string(), z.array(z.string()).min(1)])
    .default('daily')
    .superRefine((v, ctx) => {
      const d = parseDays(v);
      if (typeof d === 'string') ctx.addIssue({ code: 'custom', message: d });
    }),
  from: clockTime,
  to: clockTime,
  minIdle: z.number().int().min(0).max(1000),
});

export const minIdleScheduleSchema = z.strictObject({
  timeZone: z.string().default('UTC').refine(validTimeZone, { message: 'unknown IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)' }),
  windows: z.array(windowSchema).min(1).max(100),
});
export type MinIdleSchedule = z.output<typeof minIdleScheduleSchema>;
export type MinIdleScheduleInput = z.input<typeof minIdleScheduleSchema>;

const WEEKDAY: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };
const formatters = new Map<string, Intl.DateTimeFormat>();

/** Day of week (0 = Sunday) and minutes after midnight at `now` in `timeZone`. */
export function localTime(now: number, timeZone: string): { day: number; minute: number } {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timeZone, f);
  }
  let day = 0;
  let hour = 0;
  let minute = 0;
  for (const p of f.formatToParts(now)) {
    if (p.type === 'weekday') day = WEEKDAY[p.value]!;
    else if (p.type === 'hour') hour = Number(p.value);
    else if (p.type === 'minute') minute = Number(p.value);
  }
  return { day, minute: hour * 60 + minute };
}

interface Compiled {
  timeZone: string;
  windows: { days: number[]; from: number; to: number; minIdle: number }[];
}
const compiled = new WeakMap<MinIdleSchedule, Compiled>();

function compile(s: MinIdleSchedule): Compiled {
  let c = compiled.get(s);
  if (!c) {
    c = { timeZone: s.timeZone, windows: s.windows.map((w) => ({ days: parseDays(w.days) as number[], from: minutes(w.from), to: minutes(w.to), minIdle: w.minIdle })) };
    compiled.set(s, c);
  }
  return c;
}

/** The warm runners a pool keeps at `now`: the highest window that covers it, else `base`. */
export function scheduledMinIdle(base: number, schedule: MinIdleSchedule | undefined, now: number): number {
  if (!schedule) return base;
  const s = compile(schedule);
  const { day, minute } = localTime(now, s.timeZone);
  let best: number | undefined;
  for (const w of s.windows) {
    const covers =
      w.from < w.to
        ? w.days.includes(day) && minute >= w.from && minute < w.to
        : (w.days.includes(day) && minute >= w.from) || (w.days.includes((day + 6) % 7) && minute < w.to);
    if (covers && (best === undefined || w.minIdle > best)) best = w.minIdle;
  }
  return best ?? base;
}

/** Problems of a schedule against its pool (for the pool schema's refinement). */
export function scheduleIssues(s: MinIdleSchedule | undefined, maxRunners: number): { path: (string | number)[]; message: string }[] {
  if (!s) return [];
  return s.windows.flatMap((w, i) =>
    w.minIdle > maxRunners ? [{ path: ['minIdleSchedule', 'windows', i, 'minIdle'], message: `minIdle (${w.minIdle}) exceeds maxRunners (${maxRunners})` }] : [],
  );
}
