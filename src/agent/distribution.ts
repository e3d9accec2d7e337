/**
 * The pool's distribution: downloaded once per runner, its SHA-256 checked against the digest the
 * server named, cached in the state dir, and extracted into every job's working directory.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../lib/logger.js';
import type { Backoff, Sleep } from './backoff.js';
import { archiveKind, safeExtract, type ArchiveKind } from './archive.js';
import { isRetryable } from './errors.js';

export interface DistributionInfo {
  digest: string;
  name: string;
  size: number;
}

export interface DistributionDeps {
  download: (digest: string, signal?: AbortSignal) => Promise<{ body: Buffer; digest: string | null }>;
  cacheDir: string;
  backoff: Backoff;
  sleep: Sleep;
  log: Logger;
}

/** A distribution that cannot be used (unknown format, wrong digest, refused by the server). */
export class DistributionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DistributionError';
  }
}

const MAX_DIGEST_MISMATCHES = 3;

export class Distribution {
  private ready: Promise<string> | undefined;
  readonly kind: ArchiveKind;

  constructor(
    readonly info: DistributionInfo,
    private readonly deps: DistributionDeps,
  ) {
    const kind = archiveKind(info.name);
    if (!kind) throw new DistributionError(`distribution ${info.name} is not a .zip, .tar.gz, .tgz or .tar archive`);
    this.kind = kind;
  }

  /** The verified archive on disk, downloading it the first time. Retries while the server is down. */
  ensure(signal?: AbortSignal): Promise<string> {
    this.ready ??= this.fetch(signal).catch((err) => {
      this.ready = undefined; // a later job may try again
      throw err;
    });
    return this.ready;
  }

  async extractInto(dir: string, signal?: AbortSignal): Promise<{ entries: number }> {
    return safeExtract(await this.ensure(signal), this.kind, dir);
  }

  private async fetch(signal?: AbortSignal): Promise<string> {
    const hex = this.hex();
    const file = join(this.deps.cacheDir, `${hex}.${this.kind === 'tgz' ? 'tar.gz' : this.kind}`);
    if (existsSync(file) && sha256(readFileSync(file)) === hex) return file;
    mkdirSync(this.deps.cacheDir, { recursive: true, mode: 0o700 });
    const { backoff, sleep, log } = this.deps;
    let mismatches = 0;
    for (;;) {
      if (signal?.aborted) throw new DistributionError('download cancelled');
      try {
        const { body, digest } = await this.deps.download(this.info.digest, signal);
        const got = sha256(body);
        if (got !== hex || (digest && digest !== this.info.digest)) {
          if (++mismatches >= MAX_DIGEST_MISMATCHES) throw new DistributionError(`distribution ${this.info.name}: downloaded data has digest sha256:${got}, expected ${this.info.digest}`);
          throw Object.assign(new Error(`digest mismatch (sha256:${got})`), { retry: true });
        }
        const tmp = `${file}.${process.pid}.tmp`;
        writeFileSync(tmp, body, { mode: 0o600 });
        renameSync(tmp, file);
        backoff.reset();
        log.info({ digest: this.info.digest, name: this.info.name, bytes: body.length }, 'distribution downloaded');
        return file;
      } catch (err) {
        if (err instanceof DistributionError) throw err;
        if (!isRetryable(err) && !(err as { retry?: boolean }).retry) throw new DistributionError(`distribution ${this.info.name} cannot be downloaded: ${(err as Error).message}`);
        const delayMs = backoff.next();
        log.warn({ digest: this.info.digest, delayMs, reason: (err as Error).message }, 'distribution download failed; retrying');
        await sleep(delayMs, signal);
      }
    }
  }

  private hex(): string {
    const m = /^sha256:([0-9a-f]{64})$/.exec(this.info.digest);
    if (!m) throw new DistributionError(`distribution digest ${JSON.stringify(this.info.digest)} is not sha256:<hex>`);
    return m[1]!;
  }
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
