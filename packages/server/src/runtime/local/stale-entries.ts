/**
 * Removal of what earlier runs left among the runtime's own built parts (image roots' layers,
 * default images, disk templates): entries of a dir that are the runtime's by name and no
 * longer used. Only ever directly inside the given dir, whose path is the runtime's (under the
 * data dir, root's 0700, never a sandbox's lower or upper dir being written): each entry is
 * lstat'ed and only a directory or a regular file is removed (a directory with all below it,
 * by `rm`, which unlinks symlinks inside rather than following them); a symlink or anything
 * else of such a name is left as it is, never followed.
 */
import { lstat, readdir, rm } from "node:fs/promises";
import { join } from "node:path";

/** `<name>.building-<pid>`: built aside by process `pid`, then renamed to `name`. */
const STAGING = /^(.+)\.building-(\d+)$/;

/** Whether `name` is a staging entry of another process than this one (its build was cut short). */
export function staleStaging(name: string): boolean {
  const match = STAGING.exec(name);
  return match !== null && Number(match[2]) !== process.pid;
}

/**
 * A dir of built parts named `<kind>-v<version>-<id base>` (or its staging dir) that is not
 * `current` (nor this process's staging dir of it): another version's, another id base's, or
 * a build cut short.
 */
export function staleVersionOf(kind: string, current: string): (name: string) => boolean {
  const ours = new RegExp(`^${kind}-v[^/]*-\\d+(\\.building-\\d+)?$`);
  return (name) => ours.test(name) && name !== current && name !== `${current}.building-${process.pid}`;
}

/** Removes the entries of `dir` that `stale` names (see above); answers their names. No dir: nothing. */
export async function removeStaleEntries(dir: string, stale: (name: string) => boolean): Promise<string[]> {
  const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT" || error.code === "ENOTDIR") return [] as string[];
    throw error;
  });
  const removed: string[] = [];
  for (const name of names) {
    if (!stale(name)) continue;
    const path = join(dir, name);
    const stats = await lstat(path).catch(() => undefined);
    if (!stats || !(stats.isDirectory() || stats.isFile())) continue;
    await rm(path, { recursive: stats.isDirectory(), force: true });
    removed.push(name);
  }
  return removed;
}
