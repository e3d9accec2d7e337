import type { Command } from 'commander';
import { ageShort, bad, change, clientOf, parsePositiveInt, printJson, printTable, truncate } from './output.js';

// the kinds GET /api/v1/events takes (src/api/events.ts)
const KINDS = ['job', 'runner', 'pool', 'token', 'auth', 'scheduler', 'github'] as const;

export function registerEvents(program: Command): void {
  program
    .command('events')
    .description('the audit trail: state changes and operator actions, oldest of the page first')
    .option('-k, --kind <kind>', `only this kind (${KINDS.join(', ')})`)
    .option('-s, --subject <subject>', 'only this subject (a job ID, runner ID, token ID, …)')
    .option('-n, --limit <n>', 'how many of the newest events (1-1000, default 100)')
    .option('--before <id>', 'page: events older than this event ID')
    .option('--json', 'print the API response as JSON (newest first)')
    .action(async (opts: { kind?: string; subject?: string; limit?: string; before?: string; json?: boolean }, cmd: Command) => {
      const q = new URLSearchParams();
      const kind = opts.kind;
      if (kind !== undefined) {
        if (!(KINDS as readonly string[]).includes(kind)) throw bad(`--kind must be one of ${KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
        q.set('kind', kind);
      }
      if (opts.subject !== undefined) {
        if (!opts.subject || opts.subject.length > 200) throw bad('--subject must be 1 to 200 characters');
        q.set('subject', opts.subject);
      }
      q.set('limit', String(parsePositiveInt(opts.limit, '--limit', 1000) ?? 100));
      const before = parsePositiveInt(opts.before, '--before');
      if (before) q.set('before', String(before));
      const r = await clientOf(cmd).request<{ events: any[]; nextBefore: number | null }>('GET', `/api/v1/events?${q}`);
      if (opts.json) return printJson(r);
      const now = Date.now();
      printTable(
        ['ID', 'AGE', 'KIND', 'SUBJECT', 'CHANGE', 'REASON', 'BY'],
        [...r.events].reverse().map((e) => [e.id, ageShort(e.at, now), e.kind, truncate(e.subject, 40), change(e), truncate(e.reason ?? '', 60), e.actor]),
        kind || opts.subject || before ? 'no events match' : 'no events yet',
      );
      if (r.nextBefore) process.stderr.write(`older: runyard events --before ${r.nextBefore}\n`);
    });
}
