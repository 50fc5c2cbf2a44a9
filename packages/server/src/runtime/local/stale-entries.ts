/**
 * Removal of what earlier runs left among the runtime's own built parts (image roots' layers,
 * default images, disk templates): entries of a dir that are the runtime's by name and no
 * longer used. Only ever directly inside the given dir, whose path is the runtime's (under the
 * data dir, root's 0700, never a sandbox's lower or upper dir being written): each entry is
 * lstat'ed and only a directory or a regular file is removed (a directory with all below it,
 * by `rm`, which unlinks symlinks inside rather than following them); a symlink or anything
 * else of such a name is left as it is, never followed.
 *
 * An entry is renamed aside (`<name>.removing-<pid>-<n>`) before its removal begins, so a
 * removal cut short (the process killed, an error) never leaves a partly removed entry under
 * the name it is used by: what is found under a built part's name is whole (builds are renamed
 * into place whole). What is left aside is a stale entry in turn, removed at the next start.
 */
import { lstat, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";

/** `<name>.building-<pid>`: built aside by process `pid`, then renamed to `name`. */
const STAGING = /^(.+)\.building-(\d+)$/;
/** `<name>.removing-<pid>-<n>`: renamed aside by process `pid` to be removed. */
const REMOVING = /^(.+)\.removing-(\d+)-\d+$/;

/** Entries renamed aside by this process (for unique names). */
let asides = 0;

/**
 * Whether `name` is a staging entry or an entry being removed of another process than this
 * one (its build, or its removal, was cut short).
 */
export function staleStaging(name: string): boolean {
  const match = STAGING.exec(name) ?? REMOVING.exec(name);
  return match !== null && Number(match[2]) !== process.pid;
}

/**
 * A dir of built parts named `<kind>-v<version>-<id base>` (or its staging dir, or an entry
 * being removed) that is not `current` (nor this process's staging dir of it, nor an entry
 * this process is removing): another version's, another id base's, or a build or removal cut
 * short.
 */
export function staleVersionOf(kind: string, current: string): (name: string) => boolean {
  const ours = new RegExp(`^${kind}-v[^/]*-\\d+(\\.building-\\d+|\\.removing-\\d+-\\d+)?$`);
  return (name) =>
    ours.test(name) && name !== current && name !== `${current}.building-${process.pid}` && !removedHere(name);
}

/** Whether `name` is an entry this process renamed aside to remove (its removal may be under way). */
function removedHere(name: string): boolean {
  const match = REMOVING.exec(name);
  return match !== null && Number(match[2]) === process.pid;
}

/**
 * Removes `dir/name` if it is a directory or a regular file: renamed aside, then removed
 * (see above). Answers whether there was one to remove.
 */
export async function removeEntry(dir: string, name: string): Promise<boolean> {
  const path = join(dir, name);
  const stats = await lstat(path).catch(() => undefined);
  if (!stats || !(stats.isDirectory() || stats.isFile())) return false;
  let doomed = path;
  if (!REMOVING.test(name)) {
    doomed = join(dir, `${name}.removing-${process.pid}-${++asides}`);
    await rename(path, doomed);
  }
  await rm(doomed, { recursive: stats.isDirectory(), force: true });
  return true;
}

/** Removes the entries of `dir` that `stale` names (see above); answers their names. No dir: nothing. */
export async function removeStaleEntries(dir: string, stale: (name: string) => boolean): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await entriesOf(dir)) {
    if (stale(name) && (await removeEntry(dir, name))) removed.push(name);
  }
  return removed;
}

/** The names in `dir` (none when there is no such dir). */
export async function entriesOf(dir: string): Promise<string[]> {
  return readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT" || error.code === "ENOTDIR") return [] as string[];
    throw error;
  });
}
