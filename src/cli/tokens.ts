import type { Command } from 'commander';
import { age, bad, clientOf, hint404, parseDurationArg, parsePoolName, printJson, printTable, truncate } from './output.js';

export function registerTokens(program: Command): void {
  const tokens = program.command('tokens').description('registration tokens for runners (`runyard agent`)');

  tokens
    .command('create')
    .description('create a registration token for a pool; the secret is shown once')
    .requiredOption('-p, --pool <pool>', 'pool the runners registering with it will serve')
    .option('-d, --description <text>', 'what it is for')
    .option('--expires-in <duration>', 'valid for this long, e.g. 24h (default: until revoked)')
    .option('--json', 'print {token, secret} as JSON')
    .action(async (opts: { pool: string; description?: string; expiresIn?: string; json?: boolean }, cmd: Command) => {
      const body: Record<string, unknown> = { pool: parsePoolName(opts.pool, '--pool') };
      if (opts.description !== undefined) {
        if (opts.description.length > 500) throw bad('--description must be at most 500 characters');
        body.description = opts.description;
      }
      if (opts.expiresIn !== undefined) body.expiresIn = parseDurationArg(opts.expiresIn, '--expires-in');
      const r = await clientOf(cmd).request<{ token: any; secret: string }>('POST', '/api/v1/tokens', body);
      if (opts.json) return printJson(r);
      const expires = r.token.expiresAt ? `expires ${new Date(r.token.expiresAt).toISOString()}` : 'valid until revoked';
      process.stdout.write(`registration token ${r.token.id} for pool ${r.token.pool} (${expires}):\n\n  ${r.secret}\n\n`);
      process.stderr.write('This secret is not shown again: store it now. Give it to `runyard agent` to register a runner;\n' + `revoke it with \`runyard tokens revoke ${r.token.id}\`.\n`);
    });

  tokens
    .command('list')
    .description('list admin and registration tokens (never their secrets)')
    .option('-p, --pool <pool>', 'only tokens of this pool')
    .option('-a, --all', 'also the launch tokens the server made for runners it started itself')
    .option('--json', 'print the API response as JSON')
    .action(async (opts: { pool?: string; all?: boolean; json?: boolean }, cmd: Command) => {
      const q = parsePoolName(opts.pool, '--pool') ? `?pool=${opts.pool}` : '';
      const r = await clientOf(cmd).request<{ tokens: any[] }>('GET', `/api/v1/tokens${q}`);
      // A registration token bound to one runner is a launch token: the scheduler's, not yours.
      const hidden = opts.all ? 0 : r.tokens.filter(isLaunchToken).length;
      if (!opts.all) r.tokens = r.tokens.filter((t) => !isLaunchToken(t));
      if (opts.json) return printJson(r);
      if (hidden) process.stderr.write(`(${hidden} launch token${hidden === 1 ? '' : 's'} of runners the server started not shown; --all lists them)\n`);
      const now = Date.now();
      printTable(
        ['ID', 'KIND', 'POOL', 'STATUS', 'CREATED', 'EXPIRES', 'DESCRIPTION'],
        r.tokens.map((t) => [t.id, t.kind, t.pool, status(t, now), age(t.createdAt, now), t.expiresAt ? age(t.expiresAt, now) : 'never', truncate(t.description ?? '', 50)]),
        opts.pool ? `no tokens for pool ${opts.pool}` : 'no tokens; create one with `runyard tokens create --pool <pool>`',
      );
    });

  tokens
    .command('revoke')
    .description('revoke a token: runners not yet registered with it can no longer register')
    .argument('<id>', 'token ID (tok_…), see `runyard tokens list`')
    .option('--json', 'print the token as JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      if (!/^tok_[0-9a-f]{1,64}$/.test(id)) throw bad(`token ID must look like tok_1a2b3c4d5e6f, got ${JSON.stringify(id)}; the ID, not the secret (see \`runyard tokens list\`)`);
      const r = await hint404(clientOf(cmd).request<{ token: any }>('DELETE', `/api/v1/tokens/${id}`), 'list tokens with `runyard tokens list`');
      if (opts.json) return printJson(r);
      process.stdout.write(`token ${id} revoked\n`);
    });
}

const isLaunchToken = (t: { kind: string; runnerId?: string | null }) => t.kind === 'registration' && !!t.runnerId;

function status(t: { revokedAt: string | null; expiresAt: string | null }, now: number): string {
  if (t.revokedAt) return 'revoked';
  if (t.expiresAt && new Date(t.expiresAt).getTime() <= now) return 'expired';
  return 'active';
}
