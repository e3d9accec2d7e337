import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import { CliError } from './client.js';
import { ageShort, bad, clientOf, formatBytes, printJson, printTable } from './output.js';

const ARCHIVE_NAME = /^[A-Za-z0-9._-]{1,200}\.(zip|tar\.gz|tgz|tar)$/;
/** Files bigger than this show upload progress on a terminal. */
const PROGRESS_FROM = 8 * 1024 * 1024;

export function registerArtifacts(program: Command): void {
  const artifacts = program.command('artifacts').description('archives pools distribute to their runners (a pool\'s `distribution`)');

  artifacts
    .command('push')
    .description('upload an archive (.zip, .tar.gz, .tgz, .tar) and print its digest')
    .argument('<file>', 'the archive')
    .option('--name <name>', 'name to store it under (default: the file name)')
    .option('--json', 'print the artifact as JSON')
    .action(async (file: string, opts: { name?: string; json?: boolean }, cmd: Command) => {
      let size: number;
      try {
        const st = statSync(file);
        if (!st.isFile()) throw bad(`${file} is not a file`);
        size = st.size;
      } catch (err) {
        if (err instanceof CliError) throw err;
        throw bad(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
      }
      if (size === 0) throw bad(`${file} is empty`);
      const name = opts.name ?? basename(file);
      if (!ARCHIVE_NAME.test(name)) throw bad(`artifact name ${JSON.stringify(name)} must be a file name ending in .zip, .tar.gz, .tgz or .tar${opts.name ? '' : ' (rename the file or pass --name)'}`);

      // Hash while streaming, so the server's digest can be checked without reading the file twice.
      const hash = createHash('sha256');
      const progress = process.stderr.isTTY && size >= PROGRESS_FROM ? new Progress(name, size) : undefined;
      const stream = createReadStream(file);
      stream.on('data', (chunk) => {
        hash.update(chunk as Buffer);
        progress?.add((chunk as Buffer).length);
      });
      const r = await clientOf(cmd)
        .request<{ artifact: { digest: string; name: string; size: number } }>('POST', `/api/v1/artifacts?name=${encodeURIComponent(name)}`, undefined, {
          raw: Readable.toWeb(stream) as unknown as ReadableStream<Uint8Array>,
          contentType: 'application/octet-stream',
          headers: { 'content-length': String(size) },
        })
        .finally(() => progress?.done());
      const local = 'sha256:' + hash.digest('hex');
      if (r.artifact.digest !== local) throw new CliError(`error: the server stored digest ${r.artifact.digest} but ${file} hashes to ${local}; the upload was corrupted, push it again`);
      if (opts.json) return printJson(r);
      process.stdout.write(`${r.artifact.digest}\n`);
      process.stderr.write(`pushed ${name} (${formatBytes(r.artifact.size)}); use it in a pool as \`distribution: ${r.artifact.digest}\` (or \`distribution: ${name}\` for the newest push of that name)\n`);
    });

  artifacts
    .command('list')
    .description('list uploaded artifacts, newest first')
    .option('--json', 'print the API response as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const r = await clientOf(cmd).request<{ artifacts: { digest: string; name: string; size: number; createdAt: string }[] }>('GET', '/api/v1/artifacts');
      if (opts.json) return printJson(r);
      const now = Date.now();
      printTable(
        ['NAME', 'SIZE', 'AGE', 'DIGEST'],
        r.artifacts.map((a) => [a.name, formatBytes(a.size), ageShort(a.createdAt, now), a.digest]),
        'no artifacts; upload one with `runyard artifacts push FILE`',
      );
    });
}

/** "pushing app.tar.gz: 42% (12 MiB of 30 MiB)" on one terminal line, at most a few times a second. */
class Progress {
  private sent = 0;
  private last = 0;
  constructor(private name: string, private total: number) {}
  add(n: number): void {
    this.sent += n;
    const now = Date.now();
    if (now - this.last < 200 && this.sent < this.total) return;
    this.last = now;
    process.stderr.write(`\rpushing ${this.name}: ${Math.floor((this.sent / this.total) * 100)}% (${formatBytes(this.sent)} of ${formatBytes(this.total)})`);
  }
  done(): void {
    process.stderr.write('\n');
  }
}
