import type { Command } from 'commander';
import { clientOf, printJson, printTable } from './output.js';

export function registerClassSizes(program: Command): void {
  const sizes = program.command('class-sizes').description('the class sizes (cpu, memory) pools may use');
  sizes
    .command('list')
    .description('list class sizes')
    .option('--json', 'print the API response as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const r = await clientOf(cmd).request<{ classSizes: { name: string; cpu: number; memoryMb: number }[] }>('GET', '/api/v1/class-sizes');
      if (opts.json) return printJson(r);
      printTable(
        ['NAME', 'CPU', 'MEMORY'],
        r.classSizes.map((c) => [c.name, c.cpu, c.memoryMb % 1024 === 0 ? `${c.memoryMb / 1024} GiB` : `${c.memoryMb} MiB`]),
        'no class sizes; define them under classSizes in runyard.yaml',
      );
    });
}
