/**
 * Extracts a distribution (zip, tar, tar.gz) into a job's directory without ever writing outside
 * it. Two passes: first every entry is checked — paths must stay inside (no absolute paths, no
 * `..` climbing out), symlink and hardlink targets likewise, no device files — and one bad entry
 * refuses the whole archive before anything is written. Then files and directories are written,
 * and symlinks are created last, so no entry is ever written through a link the archive made;
 * each created link is checked once more against the real filesystem.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, realpath, rm, symlink } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type * as Tar from 'tar';
import type Yauzl from 'yauzl';
import { ArchiveRefusedError } from './errors.js';

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
}

/** Extracts `file` into `dest` (which must exist); throws ArchiveRefusedError for unsafe archives. */
export async function safeExtract(file: string, kind: ArchiveKind, dest: string): Promise<{ entries: number }> {
  const root = await realpath(dest);
  let entries: Entry[];
  try {
    entries = kind === 'zip' ? await listZip(file) : await listTar(file, kind);
  } catch (err) {
    if (err instanceof ArchiveRefusedError) throw err;
    throw new ArchiveRefusedError(`archive refused: ${(err as Error).message}`);
  }
  for (const e of entries) check(root, e);
  if (kind === 'zip') await extractZip(file, root);
  else await (await tarLib()).x({ file, cwd: root, strict: true, preservePaths: false, gzip: kind === 'tgz' ? true : undefined, filter: (_p, e) => (e as Tar.ReadEntry).type !== 'SymbolicLink' });
  // Links last, so nothing above was written through one of them.
  for (const e of entries.filter((x) => x.kind === 'symlink')) {
    const at = inside(root, e.path)!;
    await mkdir(dirname(at), { recursive: true });
    await symlink(e.link!, at);
    const real = await realpath(at).catch(() => undefined); // dangling: the lexical check stands
    if (real && !within(root, real)) {
      await rm(at, { force: true });
      throw new ArchiveRefusedError(`archive refused: symlink ${e.path} resolves outside the working directory`);
    }
  }
  return { entries: entries.length };
}

function check(root: string, e: Entry): void {
  if (!inside(root, e.path)) throw new ArchiveRefusedError(`archive refused: entry ${JSON.stringify(e.path)} would be written outside the working directory`);
  if (e.kind === 'symlink') {
    const target = e.link ?? '';
    if (!target || isAbsolute(target) || !within(root, resolve(dirname(inside(root, e.path)!), target)))
      throw new ArchiveRefusedError(`archive refused: symlink ${JSON.stringify(e.path)} points outside the working directory (${JSON.stringify(target)})`);
  }
  if (e.kind === 'hardlink' && (!e.link || !inside(root, e.link)))
    throw new ArchiveRefusedError(`archive refused: hard link ${JSON.stringify(e.path)} points outside the working directory (${JSON.stringify(e.link)})`);
}

/** The absolute path of `entryPath` under root, or undefined when it would leave root. */
function inside(root: string, entryPath: string): string | undefined {
  const p = entryPath.replace(/\\/g, '/');
  if (!p || p.includes('\0') || p.startsWith('/') || /^[A-Za-z]:/.test(p)) return undefined;
  if (p.split('/').includes('..')) return undefined;
  const abs = resolve(root, p);
  return within(root, abs) ? abs : undefined;
}

function within(root: string, abs: string): boolean {
  const rel = relative(root, abs);
  return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel));
}

async function listTar(file: string, kind: ArchiveKind): Promise<Entry[]> {
  const entries: Entry[] = [];
  let bad: string | undefined;
  await (await tarLib()).t({
    file,
    gzip: kind === 'tgz' ? true : undefined,
    strict: true,
    onReadEntry: (e) => {
      const type = e.type;
      if (type === 'File' || type === 'OldFile' || type === 'ContiguousFile') entries.push({ path: e.path, kind: 'file' });
      else if (type === 'Directory') entries.push({ path: e.path, kind: 'dir' });
      else if (type === 'SymbolicLink') entries.push({ path: e.path, kind: 'symlink', link: e.linkpath });
      else if (type === 'Link') entries.push({ path: e.path, kind: 'hardlink', link: e.linkpath });
      else bad ??= `archive refused: entry ${JSON.stringify(e.path)} is a ${type}, which a distribution may not contain`;
      e.resume();
    },
  });
  if (bad) throw new ArchiveRefusedError(bad);
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
      if (e.fileName.endsWith('/') || type === S_IFDIR) entries.push({ path: e.fileName, kind: 'dir' });
      else if (type === S_IFLNK) entries.push({ path: e.fileName, kind: 'symlink', link: (await readAll(await zip.openReadStreamPromise(e))).toString('utf8') });
      else if (type === 0 || type === S_IFREG) entries.push({ path: e.fileName, kind: 'file', mode: mode & 0o777 });
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
      const perm = mode & 0o777 ? (mode & 0o777) | 0o600 : 0o644;
      await pipeline(await zip.openReadStreamPromise(e), createWriteStream(at, { flags: 'wx', mode: perm & 0o777 }));
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

