/**
 * Extracts a distribution (zip, tar, tar.gz) into a job's directory without ever writing outside
 * it. Two passes: first every entry is checked on paper — paths must stay inside (no absolute
 * paths, no `..` climbing out), no entry below a symlink the archive makes, link targets inside,
 * no device files, the whole within a size, ratio and entry-count budget, the archive complete —
 * and one bad entry refuses the whole archive before anything is written. Then files and
 * directories are written (modes without setuid, setgid or sticky bits), symlinks last, each only
 * where no link lies above it on disk; finally every symlink is resolved against what is on disk
 * (links that exist followed, missing parts as written) and one that leads outside refuses the
 * archive.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, realpath, stat, symlink } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type * as Tar from 'tar';
import type Yauzl from 'yauzl';
import { ArchiveRefusedError } from './errors.js';
import { assertNoLinkAbove, inside, resolveOnDisk, within } from './archive-paths.js';

// Loaded on first use: most runners never extract a distribution, and every runner's start pays
// for what the agent imports.
const tarLib = () => import('tar');
const yauzlLib = async () => (await import('yauzl')).default;

export type ArchiveKind = 'zip' | 'tar' | 'tgz';

export function archiveKind(name: string): ArchiveKind | undefined {
  if (/\.zip$/i.test(name)) return 'zip';
  if (/\.(tar\.gz|tgz)$/i.test(name)) return 'tgz';
  if (/\.tar$/i.test(name)) return 'tar';
  return undefined;
}

interface Entry {
  path: string;
  kind: 'file' | 'dir' | 'symlink' | 'hardlink';
  link?: string;
  mode?: number;
  /** uncompressed bytes */
  size: number;
}

/** What one extraction may write; a zip or tar bomb is refused before anything is written. */
export interface ExtractLimits {
  /** total uncompressed bytes */
  maxBytes: number;
  /** uncompressed bytes per archive byte, checked once the total passes `ratioFloorBytes` */
  maxRatio: number;
  ratioFloorBytes: number;
  maxEntries: number;
}

export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = { maxBytes: 4 * 1024 ** 3, maxRatio: 200, ratioFloorBytes: 64 * 1024 ** 2, maxEntries: 200_000 };

/** Permission bits kept: setuid, setgid and sticky bits from an archive are dropped. */
const PERM = 0o777;

/** Extracts `file` into `dest` (which must exist); throws ArchiveRefusedError for unsafe archives. */
export async function safeExtract(file: string, kind: ArchiveKind, dest: string, limits: ExtractLimits = DEFAULT_EXTRACT_LIMITS): Promise<{ entries: number }> {
  const root = await realpath(dest);
  let entries: Entry[];
  try {
    entries = kind === 'zip' ? await listZip(file) : await listTar(file, kind);
  } catch (err) {
    if (err instanceof ArchiveRefusedError) throw err;
    throw new ArchiveRefusedError(`archive refused: ${(err as Error).message}`);
  }
  checkBudget(entries, (await stat(file)).size, limits);
  const links = new Set(entries.filter((e) => e.kind === 'symlink').map((e) => relative(root, inside(root, e.path) ?? root)));
  for (const e of entries) check(root, e, links);
  try {
    if (kind === 'zip') await extractZip(file, root);
    else
      await (await tarLib()).x({
        file,
        cwd: root,
        strict: true,
        preservePaths: false,
        gzip: kind === 'tgz' ? true : undefined,
        filter: (_p, e) => {
          const entry = e as Tar.ReadEntry;
          if (entry.mode) entry.mode &= PERM; // node-tar writes the mode it reads after this filter
          return entry.type !== 'SymbolicLink';
        },
      });
  } catch (err) {
    throw new ArchiveRefusedError(`archive refused: ${(err as Error).message}`);
  }
  // Links last, so nothing above was written through one of them; none is made through another.
  const made: { at: string; link: string; path: string }[] = [];
  for (const e of entries.filter((x) => x.kind === 'symlink')) {
    const at = inside(root, e.path)!;
    const through = await assertNoLinkAbove(root, at);
    if (through) throw new ArchiveRefusedError(`archive refused: symlink ${JSON.stringify(e.path)} would be made through a link (${through})`);
    await mkdir(dirname(at), { recursive: true });
    await symlink(e.link!, at);
    made.push({ at, link: e.link!, path: e.path });
  }
  // With every link in place: where each really leads, following the links that exist.
  for (const m of made)
    if ((await resolveOnDisk(root, dirname(m.at), m.link)) === undefined)
      throw new ArchiveRefusedError(`archive refused: symlink ${JSON.stringify(m.path)} resolves outside the working directory (${JSON.stringify(m.link)})`);
  return { entries: entries.length };
}

function checkBudget(entries: Entry[], archiveBytes: number, limits: ExtractLimits): void {
  if (entries.length > limits.maxEntries) throw new ArchiveRefusedError(`archive refused: ${entries.length} entries, more than the ${limits.maxEntries} allowed`);
  const total = entries.reduce((n, e) => n + e.size, 0);
  if (total > limits.maxBytes) throw new ArchiveRefusedError(`archive refused: it would extract ${total} bytes, more than the ${limits.maxBytes} allowed`);
  if (total > limits.ratioFloorBytes && total / Math.max(1, archiveBytes) > limits.maxRatio)
    throw new ArchiveRefusedError(`archive refused: it would extract ${total} bytes from ${archiveBytes} (more than ${limits.maxRatio}x): a compression bomb?`);
}

function check(root: string, e: Entry, links: Set<string>): void {
  const at = inside(root, e.path);
  if (!at) throw new ArchiveRefusedError(`archive refused: entry ${JSON.stringify(e.path)} would be written outside the working directory`);
  const below = linkAbove(root, at, links);
  if (below) throw new ArchiveRefusedError(`archive refused: entry ${JSON.stringify(e.path)} lies below the archive's symlink ${JSON.stringify(below)}`);
  if (e.kind === 'symlink') {
    const target = e.link ?? '';
    if (!target || isAbsolute(target) || !within(root, resolve(dirname(at), target)))
      throw new ArchiveRefusedError(`archive refused: symlink ${JSON.stringify(e.path)} points outside the working directory (${JSON.stringify(target)})`);
  }
  if (e.kind === 'hardlink') {
    const target = e.link ? inside(root, e.link) : undefined;
    if (!target || links.has(relative(root, target)) || linkAbove(root, target, links))
      throw new ArchiveRefusedError(`archive refused: hard link ${JSON.stringify(e.path)} points outside the working directory or through a symlink (${JSON.stringify(e.link)})`);
  }
}

/** The archive's own symlink that `abs` would be written through, if any. */
function linkAbove(root: string, abs: string, links: Set<string>): string | undefined {
  for (let d = dirname(abs); d !== root && within(root, d); d = dirname(d)) if (links.has(relative(root, d))) return relative(root, d);
  return undefined;
}

async function listTar(file: string, kind: ArchiveKind): Promise<Entry[]> {
  const entries: Entry[] = [];
  let bad: string | undefined;
  // A complete archive ends with zero blocks; one cut at an entry's edge (or inside a header)
  // would otherwise list as a shorter, valid-looking one.
  let ended = false;
  const parser = new (await tarLib()).Parser({
    gzip: kind === 'tgz' ? true : undefined,
    strict: true,
    onReadEntry: (e) => {
      ended = false;
      const type = e.type;
      if (type === 'File' || type === 'OldFile' || type === 'ContiguousFile') entries.push({ path: e.path, kind: 'file', size: e.size ?? 0 });
      else if (type === 'Directory') entries.push({ path: e.path, kind: 'dir', size: 0 });
      else if (type === 'SymbolicLink') entries.push({ path: e.path, kind: 'symlink', link: e.linkpath, size: 0 });
      else if (type === 'Link') entries.push({ path: e.path, kind: 'hardlink', link: e.linkpath, size: 0 });
      else bad ??= `archive refused: entry ${JSON.stringify(e.path)} is a ${type}, which a distribution may not contain`;
      e.resume();
    },
  });
  parser.on('nullBlock', () => (ended = true));
  parser.on('eof', () => (ended = true));
  await pipeline(createReadStream(file), parser);
  if (bad) throw new ArchiveRefusedError(bad);
  if (!ended) throw new ArchiveRefusedError('archive refused: it is truncated (no end-of-archive marker)');
  return entries;
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

async function listZip(file: string): Promise<Entry[]> {
  const zip = await openZip(file);
  const entries: Entry[] = [];
  try {
    for await (const e of zip.eachEntry()) {
      const mode = (e.externalFileAttributes >>> 16) & 0xffff;
      const type = mode & S_IFMT;
      if (e.fileName.endsWith('/') || type === S_IFDIR) entries.push({ path: e.fileName, kind: 'dir', size: 0 });
      else if (type === S_IFLNK) {
        if (e.uncompressedSize > 4096) throw new ArchiveRefusedError(`archive refused: symlink ${JSON.stringify(e.fileName)} has a ${e.uncompressedSize}-byte target`);
        entries.push({ path: e.fileName, kind: 'symlink', link: (await readAll(await zip.openReadStreamPromise(e))).toString('utf8'), size: 0 });
      } else if (type === 0 || type === S_IFREG) entries.push({ path: e.fileName, kind: 'file', mode: mode & PERM, size: e.uncompressedSize });
      else throw new ArchiveRefusedError(`archive refused: entry ${JSON.stringify(e.fileName)} is a special file, which a distribution may not contain`);
    }
  } finally {
    zip.close();
  }
  return entries;
}

async function extractZip(file: string, root: string): Promise<void> {
  const zip = await openZip(file);
  try {
    for await (const e of zip.eachEntry()) {
      const mode = (e.externalFileAttributes >>> 16) & 0xffff;
      if ((mode & S_IFMT) === S_IFLNK) continue; // created last by the caller
      const at = inside(root, e.fileName)!;
      if (e.fileName.endsWith('/') || (mode & S_IFMT) === S_IFDIR) {
        await mkdir(at, { recursive: true });
        continue;
      }
      await mkdir(dirname(at), { recursive: true });
      const perm = mode & PERM ? (mode & PERM) | 0o600 : 0o644;
      await pipeline(await zip.openReadStreamPromise(e), createWriteStream(at, { flags: 'wx', mode: perm }));
    }
  } finally {
    zip.close();
  }
}

async function openZip(file: string): Promise<Yauzl.ZipFile> {
  try {
    // yauzl itself rejects absolute and `..` names; our own check runs on top of it.
    return await (await yauzlLib()).openPromise(file, { lazyEntries: true, autoClose: false });
  } catch (err) {
    throw new ArchiveRefusedError(`archive refused: ${(err as Error).message}`);
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

