/**
 * Where an image's `/etc` leads, found by reading its layers in the image store as overlayfs
 * will show them, never by resolving a path on the host.
 *
 * Why: bwrap binds the sandbox's DNS config over `/etc/resolv.conf` while the host's root is
 * still reachable (as its `/oldroot`), and it follows symlinks in the new root to get there
 * (making a missing mount point on the way). So the mount point must be a path of the root
 * with no symlink of the image in it. An image whose `/etc` is a real directory (or which has
 * none) gets the shared mount-point layer, whose real `/etc` and `/etc/resolv.conf` sit on
 * top (mount-point-layers.ts). One whose `/etc` is a symlink (`/etc -> usr/etc`, as some
 * distributions ship) would lose its files that way: a directory on top hides a symlink below
 * it whole. For those, this module follows the symlink chain through the image's layers (the
 * lower dirs of the sandbox's overlay, top first), as the kernel will inside the sandbox, and
 * answers the directory it ends at as plain names; the mount-point layer made for it has real
 * directories along exactly that path and an empty `resolv.conf` at its end, and leaves `/etc`
 * the image's symlink. bwrap then binds at that path, which has no symlink in the merged root:
 * every component is a real directory of the topmost layer, whatever the image holds there.
 * That guarantee rests on the layer built from the answer, not on this module being a perfect
 * copy of overlayfs: a mistake here could make an image's `/etc` miss its DNS config, never
 * make bwrap follow an image's symlink.
 *
 * Read as overlayfs does (lower dirs only; `userxattr`, see root-mount.ts): a name in a merged
 * directory is the topmost layer's entry of that name; a whiteout (a 0/0 character device)
 * hides it and all below; a directory merges with the directories of that name below it, down
 * to the first one marked opaque (`user.overlay.opaque=y`, which the store sets) or the first
 * entry that is not a directory; the layers' roots always merge. The store makes none of
 * overlayfs' redirects, metacopies or xattr whiteouts, and keeps no xattr of an image's.
 *
 * The layers are the store's: root's (0700), never written while the image exists, so what
 * is read here cannot change underneath (a path is only ever joined below a component this
 * module found to be a directory of that layer with lstat). Paths of the image are hostile:
 * resolution is refused (a sentence for the create's typed error) when the chain loops (more
 * than the kernel's 40 symlinks), climbs above the root, ends at the root or at something
 * that is not a directory, goes through a mount point the sandbox gets (`/.sbx`, `/proc`,
 * `/dev`, `/tmp`), names a directory below a missing one with `..`, is not UTF-8, or takes
 * more than MAX_STEPS components or MAX_OPAQUE_READS reads of xattrs (a hostile image could
 * otherwise make the server walk for long; a real chain takes a few steps, each at most one
 * lstat per layer and one getfattr process). Directories the chain names that the image does
 * not have are made in the mount-point layer (as Docker makes a missing mount point in the
 * container's root).
 */
import { execFile } from "node:child_process";
import { lstat, readlink } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

/** What an image's `/etc` is, for its sandboxes' mount-point layer. */
export type ImageEtc =
  /** A directory of the image, or no `/etc`, or a non-symlink the shared layer's `/etc` covers. */
  | { readonly kind: "dir" }
  /** A symlink leading (maybe through others) to `target`, a directory path with no symlink. */
  | { readonly kind: "link"; readonly target: readonly EtcTargetDir[] }
  /** A symlink leading nowhere a sandbox can have it: why, as a sentence's end ("its /etc …"). */
  | { readonly kind: "refused"; readonly problem: string };

/** One component of the path `/etc` leads to, top down. */
export interface EtcTargetDir {
  readonly name: string;
  /** The image's directory there, as overlayfs shows it (its topmost copy's, on-disk ids); absent: the image has none. */
  readonly owner?: { readonly uid: number; readonly gid: number; readonly mode: number };
}

/** Names every image root has as the runtime's mount points (the sandbox mounts over them). */
export const MOUNT_POINT_NAMES: ReadonlySet<string> = new Set([".sbx", "proc", "dev", "tmp"]);

/** The kernel's limit on symlinks followed in one path lookup (MAXSYMLINKS). */
const MAX_SYMLINKS = 40;
/** Path components looked at in all: a real /etc chain takes a handful. */
const MAX_STEPS = 256;
/** Opaque marks read in all (a directory's copies in every layer but the last, at each step; a process per step). */
const MAX_OPAQUE_READS = 4096;
const PATH_MAX = 4096;
const NAME_MAX = 255;

/** A directory of the merged image: its copies in the layers that make it up, top first. */
interface MergedDir {
  readonly name: string;
  readonly copies: readonly string[];
  readonly owner?: EtcTargetDir["owner"];
  /** The image has no such directory (the chain named one below a missing name). */
  readonly missing?: boolean;
}

type Entry =
  | { readonly kind: "missing" }
  | { readonly kind: "dir"; readonly copies: string[]; readonly owner: NonNullable<EtcTargetDir["owner"]> }
  | { readonly kind: "symlink"; readonly path: string }
  | { readonly kind: "other" };

class Refused extends Error {}

/** What one resolution has spent (see MAX_STEPS, MAX_OPAQUE_READS). */
interface Budget {
  steps: number;
  opaqueReads: number;
}

/** A stack of merged directories (the root first) as the path it names, quoted. */
const shown = (stack: readonly MergedDir[]) =>
  JSON.stringify(`/${stack.map((d) => d.name).join("/")}`.replace(/^\/\//, "/"));

/**
 * Where `/etc` of the image whose layers are `layerDirs` (the store's dirs, top first, each
 * once) leads.
 */
export async function resolveImageEtc(layerDirs: readonly string[]): Promise<ImageEtc> {
  const budget: Budget = { steps: 0, opaqueReads: 0 };
  const root: MergedDir = { name: "", copies: layerDirs };
  const etc = await entryOf(root, "etc", budget);
  if (etc.kind !== "symlink") return { kind: "dir" };
  try {
    return { kind: "link", target: await follow(root, etc.path, budget) };
  } catch (error) {
    if (error instanceof Refused) return { kind: "refused", problem: error.message };
    throw error;
  }
}

/** Follows the symlink at `link` (the host path of `/etc`'s topmost entry) to a directory. */
async function follow(root: MergedDir, link: string, budget: Budget): Promise<EtcTargetDir[]> {
  // The symlink is in the root: relative or absolute, its target starts there.
  let stack: MergedDir[] = [root];
  let queue = (await symlinkParts(link)).parts;
  let symlinks = 1;
  while (queue.length > 0) {
    const name = queue[0] as string;
    queue = queue.slice(1);
    if (name === "" || name === ".") continue;
    if (++budget.steps > MAX_STEPS) throw new Refused(`is a symlink that takes over ${MAX_STEPS} steps to resolve`);
    const here = stack[stack.length - 1] as MergedDir;
    if (name === "..") {
      if (here.missing)
        throw new Refused(`is a symlink that climbs out of ${shown(stack)}, which the image does not have`);
      if (stack.length === 1) throw new Refused("is a symlink that leads out of the image's root");
      stack.pop();
      continue;
    }
    if (Buffer.byteLength(name) > NAME_MAX) throw new Refused("is a symlink that names a path component too long");
    if (stack.length === 1 && MOUNT_POINT_NAMES.has(name)) {
      throw new Refused(`is a symlink that leads into /${name}, which the sandbox mounts over`);
    }
    if (here.missing) {
      stack.push({ name, copies: [], missing: true });
      continue;
    }
    const entry = await entryOf(here, name, budget);
    switch (entry.kind) {
      case "missing":
        stack.push({ name, copies: [], missing: true });
        break;
      case "dir":
        stack.push({ name, copies: entry.copies, owner: entry.owner });
        break;
      case "symlink": {
        if (++symlinks > MAX_SYMLINKS) throw new Refused(`is a symlink that loops (over ${MAX_SYMLINKS} symlinks)`);
        const target = await symlinkParts(entry.path);
        if (target.absolute) stack = [root];
        queue = [...target.parts, ...queue];
        break;
      }
      case "other":
        stack.push({ name, copies: [] });
        throw new Refused(`is a symlink that leads to ${shown(stack)}, which is not a directory`);
    }
  }
  if (stack.length === 1) throw new Refused("is a symlink to the image's root");
  const target = stack.slice(1);
  if (Buffer.byteLength(`/${target.map((d) => d.name).join("/")}/resolv.conf`) >= PATH_MAX) {
    throw new Refused("is a symlink that leads to a path too long");
  }
  return target.map((d): EtcTargetDir => (d.owner ? { name: d.name, owner: d.owner } : { name: d.name }));
}

/** A symlink's target as components; only UTF-8 targets are followed (its bytes exactly). */
async function symlinkParts(path: string): Promise<{ absolute: boolean; parts: string[] }> {
  const bytes = await readlink(path, { encoding: "buffer" });
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Refused("is a symlink whose target is not UTF-8");
  }
  return { absolute: text.startsWith("/"), parts: text.split("/") };
}

/** The entry `name` of the merged directory `dir`, as overlayfs shows it. */
async function entryOf(dir: MergedDir, name: string, budget: Budget): Promise<Entry> {
  // The first layer that has the name decides what it is; a directory there merges with the
  // directories of that name below it, unless a copy above them is opaque.
  const found: { path: string; isDir: boolean; isSymlink: boolean; owner: NonNullable<EtcTargetDir["owner"]> }[] = [];
  for (const copy of dir.copies) {
    const path = `${copy}/${name}`;
    const stats = await lstat(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return undefined;
      throw error;
    });
    if (!stats) continue;
    if (stats.isCharacterDevice() && stats.rdev === 0) break; // a whiteout
    const entry = {
      path,
      isDir: stats.isDirectory(),
      isSymlink: stats.isSymbolicLink(),
      owner: { uid: stats.uid, gid: stats.gid, mode: stats.mode & 0o7777 },
    };
    if (found.length > 0 && !entry.isDir) break; // a non-directory below a directory: hidden, and so is all below
    found.push(entry);
    if (!entry.isDir) break;
  }
  const top = found[0];
  if (!top) return { kind: "missing" };
  if (top.isSymlink) return { kind: "symlink", path: top.path };
  if (!top.isDir) return { kind: "other" };
  // Copies below an opaque one do not show. Only copies that have one below them matter.
  const above = found.slice(0, -1).map((copy) => copy.path);
  budget.opaqueReads += above.length;
  if (budget.opaqueReads > MAX_OPAQUE_READS) {
    throw new Refused(`is a symlink that takes over ${MAX_OPAQUE_READS} reads of its layers to resolve`);
  }
  const opaque = await opaqueOf(above);
  const copies = [top.path];
  for (let i = 0; i + 1 < found.length && !opaque.has((found[i] as (typeof found)[number]).path); i++) {
    copies.push((found[i + 1] as (typeof found)[number]).path);
  }
  return { kind: "dir", copies, owner: top.owner };
}

/** Paths getfattr prints as they are (no quoting): a batch of them is read by one process. */
const PLAIN_PATH = /^[A-Za-z0-9._+,@/-]+$/;

/** Which of `paths` (directories of layers) are marked opaque (the xattr the sandbox's overlay reads). */
async function opaqueOf(paths: readonly string[]): Promise<Set<string>> {
  const opaque = new Set<string>();
  if (paths.length === 0) return opaque;
  const plain = paths.filter((path) => PLAIN_PATH.test(path));
  const batches = [plain, ...paths.filter((path) => !PLAIN_PATH.test(path)).map((path) => [path])];
  for (const batch of batches) {
    if (batch.length === 0) continue;
    // -d with -m: a block ("# file: PATH", then the xattr) for each file that has it, nothing else.
    const { stdout } = await run(
      "getfattr",
      ["-h", "--absolute-names", "-e", "text", "-d", "-m", "^user\\.overlay\\.opaque$", "--", ...batch],
      { env: { LC_ALL: "C" }, maxBuffer: 16 * 1024 * 1024 },
    );
    for (const block of stdout.split(/\n\n/)) {
      if (!/^user\.overlay\.opaque="y"$/m.test(block)) continue;
      // One path asked: its block. Several (plain paths, printed as they are): by the path.
      const file = /^# file: (.*)$/m.exec(block)?.[1];
      if (batch.length === 1) opaque.add(batch[0] as string);
      else if (file !== undefined && batch.includes(file)) opaque.add(file);
    }
  }
  return opaque;
}
