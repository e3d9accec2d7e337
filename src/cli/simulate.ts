import type { Command } from 'commander';
import { collect } from './output.js';

/** `runyard simulate`: replays a job trace through the real scheduler decision, offline. */
export function registerSimulate(program: Command): void {
  program
    .command('simulate')
    .description('replay a job trace through the scheduler with a virtual clock and compare pool configurations')
    .argument('[trace]', 'job trace: JSONL, CSV or GitHub workflow-job JSON (- for standard input)')
    .option('--format <format>', 'trace format: jsonl, csv or github (default: from the file)')
    .option('--from-store', 'take the trace from a runyard store (RUNYARD_DATABASE_URL, or the PGlite store in --data-dir)')
    .option('--since <duration>', 'with --from-store: the window to read, back from now', '24h')
    .option('--data-dir <dir>', 'the runyard data dir holding the embedded store', '.runyard')
    .option('--config <file>', 'pools to simulate: a runyard.yaml, a list of pools or one pool (default: the store\'s pools, else the default pool)')
    .option('--spec <file>', 'simulation file: provider models, cost per runner-hour by class, policies to compare')
    .option('--set <field=value>', 'a policy to compare with the current config: FIELD=VALUE or POOL.FIELD=VALUE (repeatable)', collect)
    .option('--start-latency <dist>', 'runner start latency: 20s, uniform:5s:30s, lognormal:MEDIAN:P95, or fit (from the store\'s runners)')
    .option('--seed <n>', 'PRNG seed (same input and seed: same output)')
    .option('--slo <slo>', 'queue wait SLO: 30s (counts jobs over it), or p95=30s with --suggest')
    .option('--suggest', 'search minIdle, idleTimeout and an office-hours schedule for the cheapest config meeting --slo')
    .option('--tz <zone>', 'IANA time zone for suggested schedules', 'UTC')
    .option('--json', 'figures as JSON')
    .option('--html <file>', 'also write a self-contained HTML report with charts')
    .option('--export-trace <file>', 'write the trace read (e.g. from a store) as JSONL')
    .option('--no-progress', 'no progress lines on standard error')
    .addHelpText('after', '\nExamples:\n  runyard simulate jobs.jsonl --config runyard.yaml --set minIdle=2 --set idleTimeout=15m\n  runyard simulate --from-store --since 24h --start-latency fit --html report.html\n  runyard simulate jobs.csv --config pools.yaml --suggest --slo p95=30s --tz Europe/Berlin')
    .action(async (trace: string | undefined, opts) => {
      const { runSimulate } = await import('./simulate-run.js');
      await runSimulate(trace, opts);
    });
}
