/*
 * Path checks for archive extraction, on paper (entry names) and on disk (what is really
 * there). A path is "inside" when it stays under the extraction root; on disk, symbolic links
 * that exist are followed the way the kernel would, and parts that do not exist yet are taken
 * as written (a job may create them later, and they then mean what they say).
 */
import type { Stats } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

/** Links followed while resolving one path, as the kernel's own limit. */
const MAX_LINK_HOPS = 40;

/** The absolute path of `entryPath` under root, or undefined when it would leave root. */
export function inside(root: string, entryPath: string): string | undefined {
  const p = entryPath.replace(/\\/g, '/');
  if (!p || p.includes('\0') || p.startsWith('/') || /^[A-Za-z]:/.test(p)) return undefined;
  if (p.split('/').includes('..')) return undefined;
  const abs = resolve(root, p);
  return within(root, abs) ? abs : undefined;
}

export function within(root: string, abs: string): boolean {
  const rel = relative(root, abs);
  return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel));
}

/** Every directory between root and `abs` (both excluded), from the top. */
export function ancestors(root: string, abs: string): string[] {
  const out: string[] = [];
  for (let d = dirname(abs); d !== root && within(root, d) && d !== dirname(d); d = dirname(d)) out.unshift(d);
  return out;
}

/**
 * Refuses to write at `abs` through a link: every existing directory above it must be a real
 * directory. Missing ones are fine (mkdir makes real directories).
 */
export async function assertNoLinkAbove(root: string, abs: string): Promise<string | undefined> {
  for (const d of ancestors(root, abs)) {
    const st = await lstat(d).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
    if (!st) return undefined;
    if (st.isSymbolicLink()) return `${relative(root, d)} is a symbolic link`;
    if (!st.isDirectory()) return `${relative(root, d)} is not a directory`;
  }
  return undefined;
}

/**
 * Where the link target `target`, read in directory `dir`, leads on disk: undefined when any
 * step leaves root (an absolute target, a `..` above root, a link on the way that does).
 */
export async function resolveOnDisk(root: string, dir: string, target: string, hops = { n: 0 }): Promise<string | undefined> {
  if (isAbsolute(target)) return undefined;
  let cur = dir;
  let missing = false;
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') cur = dirname(cur);
    else {
      const next = join(cur, part);
      const st: Stats | undefined = missing ? undefined : await lstat(next).catch(() => undefined);
      if (st?.isSymbolicLink()) {
        if (++hops.n > MAX_LINK_HOPS) return undefined;
        const via = await resolveOnDisk(root, cur, await readlink(next), hops);
        if (via === undefined) return undefined;
        cur = via;
      } else {
        missing ||= !st;
        cur = next;
      }
    }
    if (!within(root, cur)) return undefined;
  }
  return cur;
}
