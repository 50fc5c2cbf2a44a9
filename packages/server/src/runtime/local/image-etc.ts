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
 * `/dev`, `/tmp`), names a directory below a missing one with `..`, is not UTF-8, or names a
 * path too long for the host. A hostile image could otherwise make the server work for long,
 * before any limit of its sandboxes applies, so the work is bounded whatever the image holds
 * and costs little per unit: at most MAX_PARTS components taken from symlinks' targets in
 * all (empty and `.` ones dropped as a target is split; what is left to walk is a stack, a
 * target pushed on top), MAX_LSTATS lookups, MAX_OPAQUE_READS opaque marks read by at most
 * MAX_PROCESSES getfattr processes (one per step that needs them, never one per path). A
 * real chain takes a few steps. Opaque marks are read only while following a symlink, only
 * where a name is a directory in more than one layer. An error reading the layers is a
 * refusal too, marked `transient` (the host's doing, most likely), whose sentence names no
 * host path.
 * Directories the chain names that the image does not have are made in the mount-point layer
 * (as Docker makes a missing mount point in the container's root).
 */
import { execFile } from "node:child_process";
import { lstat, readlink } from "node:fs/promises";

/** What an image's `/etc` is, for its sandboxes' mount-point layer. */
export type ImageEtc =
  /** A directory of the image, or no `/etc`, or a non-symlink the shared layer's `/etc` covers. */
  | { readonly kind: "dir" }
  /** A symlink leading (maybe through others) to `target`, a directory path with no symlink. */
  | { readonly kind: "link"; readonly target: readonly EtcTargetDir[] }
  /**
   * A symlink leading nowhere a sandbox can have it, or layers that could not be read: why, as
   * a sentence's end ("its /etc …"); `transient`: a read failed (asking again may answer).
   */
  | { readonly kind: "refused"; readonly problem: string; readonly transient?: true };

/** One component of the path `/etc` leads to, top down. */
export interface EtcTargetDir {
  readonly name: string;
  /** The image's directory there, as overlayfs shows it (its topmost copy's, on-disk ids); absent: the image has none. */
  readonly owner?: { readonly uid: number; readonly gid: number; readonly mode: number };
}

/** What one resolution did, in the units its limits count (see the MAX_ constants). */
export interface EtcResolutionWork {
  /** Components taken from symlinks' targets (empty and `.` ones dropped), all told: one step each. */
  parts: number;
  /** Lookups of a name in one layer (an lstat each). */
  lstats: number;
  /** Directories whose opaque mark was read. */
  opaqueReads: number;
  /** getfattr processes run to read them. */
  processes: number;
}

/** Names every image root has as the runtime's mount points (the sandbox mounts over them). */
export const MOUNT_POINT_NAMES: ReadonlySet<string> = new Set([".sbx", "proc", "dev", "tmp"]);

/** The kernel's limit on symlinks followed in one path lookup (MAXSYMLINKS). */
const MAX_SYMLINKS = 40;
/** Components taken from symlinks' targets in all, each a step of the walk: a real /etc chain takes a handful. */
const MAX_PARTS = 256;
/** Lookups in all: a real chain looks up a few names, each at most once per layer (499 at most). */
const MAX_LSTATS = 8192;
/** Opaque marks read in all: where a name is a directory in several layers, its copies but the last. */
const MAX_OPAQUE_READS = 2048;
/** getfattr processes in all: one per step that reads marks (or a few, for long paths). */
const MAX_PROCESSES = 16;
/** Bytes of paths given to one getfattr process (far below the kernel's limit on a command's arguments). */
const PROCESS_PATH_BYTES = 128 * 1024;
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

const noWork = (): EtcResolutionWork => ({ parts: 0, lstats: 0, opaqueReads: 0, processes: 0 });

/** A stack of merged directories (the root first) as the path it names, quoted. */
const shown = (stack: readonly MergedDir[]) =>
  JSON.stringify(`/${stack.map((d) => d.name).join("/")}`.replace(/^\/\//, "/"));

/**
 * Where `/etc` of the image whose layers are `layerDirs` (the store's dirs, top first, each
 * once) leads. Never rejects: what cannot be read is refused. `work` (for tests) is added to.
 */
export async function resolveImageEtc(
  layerDirs: readonly string[],
  work: EtcResolutionWork = noWork(),
): Promise<ImageEtc> {
  const root: MergedDir = { name: "", copies: layerDirs };
  try {
    // (What /etc is, not what it merges with: no opaque mark is read unless it is a symlink.)
    const etc = await entryOf(root, "etc", work, false);
    if (etc.kind !== "symlink") return { kind: "dir" };
    return { kind: "link", target: await follow(root, etc.path, work) };
  } catch (error) {
    if (error instanceof Refused) return { kind: "refused", problem: error.message };
    // (A file system's or getfattr's error: its code only, no host path in a client's message.)
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    const why = typeof code === "string" && /^[A-Z0-9_]+$/.test(code) ? ` (${code})` : "";
    return { kind: "refused", problem: `could not be read in the image's layers${why}`, transient: true };
  }
}

/** Follows the symlink at `link` (the host path of `/etc`'s topmost entry) to a directory. */
async function follow(root: MergedDir, link: string, work: EtcResolutionWork): Promise<EtcTargetDir[]> {
  // The symlink is in the root: relative or absolute, its target starts there.
  let stack: MergedDir[] = [root];
  /** The components left to walk, the next one last: a symlink's target is pushed on top. */
  const pending: string[] = [];
  /** Pushes the target of the symlink at `path`; answers whether it is absolute. */
  const push = async (path: string): Promise<boolean> => {
    const target = await symlinkTarget(path);
    work.parts += target.parts.length;
    if (work.parts > MAX_PARTS) throw new Refused(`is a symlink that takes over ${MAX_PARTS} steps to resolve`);
    for (let i = target.parts.length - 1; i >= 0; i--) pending.push(target.parts[i] as string);
    return target.absolute;
  };
  await push(link);
  let symlinks = 1;
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
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
    const entry = await entryOf(here, name, work, true);
    switch (entry.kind) {
      case "missing":
        stack.push({ name, copies: [], missing: true });
        break;
      case "dir":
        stack.push({ name, copies: entry.copies, owner: entry.owner });
        break;
      case "symlink": {
        if (++symlinks > MAX_SYMLINKS) throw new Refused(`is a symlink that loops (over ${MAX_SYMLINKS} symlinks)`);
        if (await push(entry.path)) stack = [root];
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

/** A symlink's target as its components but empty and `.` ones; only UTF-8 targets are followed (its bytes exactly). */
async function symlinkTarget(path: string): Promise<{ absolute: boolean; parts: string[] }> {
  const bytes = await readlink(path, { encoding: "buffer" });
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Refused("is a symlink whose target is not UTF-8");
  }
  return { absolute: text.startsWith("/"), parts: text.split("/").filter((part) => part !== "" && part !== ".") };
}

/**
 * The entry `name` of the merged directory `dir`, as overlayfs shows it; a directory with the
 * copies it merges (`merge`) or its topmost copy alone.
 */
async function entryOf(dir: MergedDir, name: string, work: EtcResolutionWork, merge: boolean): Promise<Entry> {
  // The first layer that has the name decides what it is; a directory there merges with the
  // directories of that name below it, unless a copy above them is opaque.
  const found: { path: string; isDir: boolean; isSymlink: boolean; owner: NonNullable<EtcTargetDir["owner"]> }[] = [];
  for (const copy of dir.copies) {
    const path = `${copy}/${name}`;
    // (Checked here, where the host's part of the path counts too: an error would name the path.)
    if (Buffer.byteLength(path) >= PATH_MAX) throw new Refused("is a symlink that leads to a path too long");
    if (++work.lstats > MAX_LSTATS) {
      throw new Refused(`is a symlink that takes over ${MAX_LSTATS} lookups in its layers to resolve`);
    }
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
    if (!entry.isDir || !merge) break;
  }
  const top = found[0];
  if (!top) return { kind: "missing" };
  if (top.isSymlink) return { kind: "symlink", path: top.path };
  if (!top.isDir) return { kind: "other" };
  // Copies below an opaque one do not show. Only copies that have one below them matter.
  const opaque = await opaqueOf(
    found.slice(0, -1).map((copy) => copy.path),
    work,
  );
  const copies = [top.path];
  for (let i = 0; i + 1 < found.length && !opaque.has((found[i] as (typeof found)[number]).path); i++) {
    copies.push((found[i + 1] as (typeof found)[number]).path);
  }
  return { kind: "dir", copies, owner: top.owner };
}

/** Which of `paths` (directories of layers) are marked opaque (the xattr the sandbox's overlay reads). */
async function opaqueOf(paths: readonly string[], work: EtcResolutionWork): Promise<Set<string>> {
  const opaque = new Set<string>();
  if (paths.length === 0) return opaque;
  work.opaqueReads += paths.length;
  if (work.opaqueReads > MAX_OPAQUE_READS) {
    throw new Refused(`is a symlink that takes over ${MAX_OPAQUE_READS} reads of its layers to resolve`);
  }
  for (const batch of batchesOf(paths)) {
    if (++work.processes > MAX_PROCESSES) {
      throw new Refused(`is a symlink that takes over ${MAX_PROCESSES} batches of reads of its layers to resolve`);
    }
    for (const path of await opaqueMarked(batch)) opaque.add(path);
  }
  return opaque;
}

/** `paths` in batches of at most PROCESS_PATH_BYTES (each path shorter than PATH_MAX). */
function batchesOf(paths: readonly string[]): string[][] {
  const batches: string[][] = [];
  let batch: string[] = [];
  let bytes = 0;
  for (const path of paths) {
    const size = Buffer.byteLength(path) + 1;
    if (batch.length > 0 && bytes + size > PROCESS_PATH_BYTES) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(path);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

const OPAQUE_LINE = Buffer.from('user.overlay.opaque="y"');
const FILE_LINE = Buffer.from("# file: ");

/**
 * Which of `paths` are marked opaque, read by one getfattr process. It prints a block for each
 * file that has the xattr: "# file: PATH" (PATH's bytes as they are but for newline, carriage
 * return and backslash, as octal escapes `\ooo`), then `name="value"`; a path it prints that
 * was not asked for, or cannot be decoded, fails the read.
 */
async function opaqueMarked(paths: readonly string[]): Promise<string[]> {
  const asked = new Map(paths.map((path) => [Buffer.from(path).toString("latin1"), path]));
  const stdout = await new Promise<Buffer>((resolve, reject) => {
    execFile(
      "getfattr",
      ["-h", "--absolute-names", "-e", "text", "-d", "-m", "^user\\.overlay\\.opaque$", "--", ...paths],
      { env: { LC_ALL: "C" }, encoding: "buffer", maxBuffer: 16 * 1024 * 1024 },
      (error, out) => (error ? reject(error) : resolve(out)),
    );
  });
  const marked: string[] = [];
  let file: string | undefined;
  for (let start = 0; start < stdout.length; ) {
    const newline = stdout.indexOf(0x0a, start);
    const line = stdout.subarray(start, newline === -1 ? stdout.length : newline);
    start = newline === -1 ? stdout.length : newline + 1;
    if (line.subarray(0, FILE_LINE.length).equals(FILE_LINE)) {
      const decoded = unescaped(line.subarray(FILE_LINE.length));
      file = decoded === undefined ? undefined : asked.get(decoded.toString("latin1"));
      if (file === undefined) throw new Error("getfattr named a file it was not asked about");
    } else if (line.equals(OPAQUE_LINE) && file !== undefined) {
      marked.push(file);
    }
  }
  return marked;
}

/** getfattr's quoting undone: `\ooo` is that byte; any other backslash: undefined (not its format). */
function unescaped(quoted: Buffer): Buffer | undefined {
  const out: number[] = [];
  for (let i = 0; i < quoted.length; i++) {
    const byte = quoted[i] as number;
    if (byte !== 0x5c) {
      out.push(byte);
      continue;
    }
    const digits = quoted.subarray(i + 1, i + 4).toString("latin1");
    if (!/^[0-3][0-7]{2}$/.test(digits)) return undefined;
    out.push(Number.parseInt(digits, 8));
    i += 3;
  }
  return Buffer.from(out);
}
