/**
 * The server's in-process event bus: named events with typed arguments. Listeners that care about
 * one job or runner filter by the id they are given; nothing builds event names at run time.
 * A wake-up is a function call on this server; other servers on the same database notice
 * through their periodic re-checks (claims every 2 s, log followers every second).
 */
import { EventEmitter } from 'node:events';

/** Why the fleet changed: `load` when only busy/idle moved (a claim or a result); paced by the scheduler. */
export type RunnersChange = 'fleet' | 'load';

export interface BusEvents {
  /** jobs became claimable on a pool (submitted, retried, requeued) */
  'work-queued': [pool: string, count: number];
  /** runners came, went or changed state */
  'runners-changed': [why: RunnersChange];
  /** a job's state or fields changed */
  'job-changed': [jobId: number];
  /** log lines were appended to a job */
  'log-appended': [jobId: number];
  /** a runner's termination committed (its credentials are revoked) */
  'runner-terminated': [runnerId: string];
}

export type BusEvent = keyof BusEvents;
export type Bus = EventEmitter<BusEvents>;

export function createBus(): Bus {
  const bus = new EventEmitter<BusEvents>();
  bus.setMaxListeners(0);
  return bus;
}

/** One event to wait for, and optionally which of its emissions count. */
export type Subscription = { [K in BusEvent]: { event: K; when?: (...args: BusEvents[K]) => boolean } }[BusEvent];

/** The events that concern one job: its state or its logs. */
export function jobActivity(jobId: number): Subscription[] {
  const when = (id: number) => id === jobId;
  return [
    { event: 'job-changed', when },
    { event: 'log-appended', when },
  ];
}

/** Resolves when any of `subs` is emitted on `bus`, after `ms`, or on abort — whichever is first. */
export function waitForAny(bus: Bus, subs: Subscription[], ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    const listeners = subs.map((s) => {
      const fn = (...args: unknown[]) => {
        if (!s.when || (s.when as (...a: unknown[]) => boolean)(...args)) done();
      };
      (bus as EventEmitter).on(s.event, fn);
      return () => (bus as EventEmitter).off(s.event, fn);
    });
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      for (const off of listeners) off();
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
