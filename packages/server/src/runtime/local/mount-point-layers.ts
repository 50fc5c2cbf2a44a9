/**
 * The mount-point layers of image roots: the top lower dir of every sandbox started from an
 * image of the store, holding the paths bwrap and the launcher mount over as real directories
 * and a real file (`/.sbx`, `/proc`, `/dev`, `/tmp`, and the DNS config's `resolv.conf`), so
 * that no image can put a symlink in their way: bwrap makes a missing mount point, and opens an
 * existing one, through whatever symlink the image put there, while the host's root is still
 * its `/oldroot`. A directory of the top layer hides whatever the image has of that name (a
 * symlink, a file) and merges with an image's directory of that name; a file hides it.
 *
 * - The shared layer, for every image whose `/etc` is a directory (or which has none): also a
 *   real `/etc` holding an empty `resolv.conf`, the DNS config's mount point.
 * - An image whose `/etc` is a symlink keeps it: a real `/etc` on top would hide the symlink,
 *   and with it every file of the image's configuration. Its layer holds, instead of `/etc`,
 *   the directories along the path the symlink leads to (resolved within the image's layers,
 *   image-etc.ts), each with the owner and mode the image gives it, and the empty
 *   `resolv.conf` at its end: the DNS config is bound at that path, which has no symlink in
 *   the merged root (every component a directory of this layer), and shows at
 *   `/etc/resolv.conf` through the image's own symlinks. These layers are content-addressed
 *   (a hash of that path and its owners), shared by every image that leads there, held by the
 *   sandboxes that stand on them and removed when the last is gone.
 *
 * Nothing here is ever reached through a path of the image: layers are built aside in the
 * runtime's own dir (root's), then renamed into place; old versions, staging dirs cut short
 * and layers no sandbox holds are removed when the runtime cleans up at start (`sweep`).
 * Removals rename aside first (stale-entries.ts), and a layer found in place is checked whole
 * (every mount point, every directory along the DNS mount point's path a real directory, the
 * `resolv.conf` a regular file) before it is used, else made again: bwrap must never find a
 * mount point missing from the top layer (it would make it, or bind, through the image's
 * symlink of that name), whatever a run cut short, or an older version, left there.
 */
import { createHash } from "node:crypto";
import { chmod, chown, lstat, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { EtcTargetDir, ImageEtc } from "./image-etc.js";
import { MOUNT_POINT_NAMES } from "./image-etc.js";
import { entriesOf, removeEntry, removeStaleEntries, staleStaging, staleVersionOf } from "./stale-entries.js";

/** The pieces of image roots that are not the image's: made once, root's. */
export interface ImageRootParts {
  /**
   * The shared mount-point layer (idmapped: host root's dirs show as nobody, as ever; /etc and
   * its empty resolv.conf are the image's root's).
   */
  readonly mountPoints: string;
  /** An image root's disk contents: an empty `upper/` and `work/`, owned canonically. */
  readonly emptyLayer: string;
}

/** A mount-point layer a sandbox stands on, until it lets go. */
export interface MountPointLayer {
  readonly path: string;
  /** Where the sandbox's DNS config is bound: a path of the root with no symlink in it. */
  readonly resolvConf: string;
  /** The sandbox no longer stands on it (only the first call counts). */
  release(): void;
}

export const IMAGE_ROOT_PARTS_VERSION = "2";

/** The shared parts' dir name (their owners depend on the layer id base). */
export const imageRootPartsName = (layerIdBase: number): string =>
  `image-root-v${IMAGE_ROOT_PARTS_VERSION}-${layerIdBase}`;
/** Where, in the shared parts' dir, the layers of images whose /etc is a symlink are. */
const ETC_LINK_LAYERS = "etc-links";
/** An entry of ETC_LINK_LAYERS: a layer, its staging dir, or one being removed. */
const ETC_LINK_ENTRY = /^([0-9a-f]{32})(\.building-\d+|\.removing-\d+-\d+)?$/;

/**
 * /etc/resolv.conf (the sandbox's DNS, bound over it), in an /etc that is the image's root's
 * (canonical: the layer is idmapped like the image's own), so that /etc, which this dir
 * covers the image's attributes of, stays the sandbox root's to write in as in any image.
 */
const ETC_DIR = "etc";
const RESOLV_CONF = "resolv.conf";
const RESOLV_CONF_MODE = 0o644;

/** Builds the shared parts under `dir` once (atomically: built aside, then renamed). */
export async function ensureImageRootParts(dir: string, layerIdBase: number): Promise<ImageRootParts> {
  const parts = join(dir, imageRootPartsName(layerIdBase));
  const built = { mountPoints: join(parts, "mount-points"), emptyLayer: join(parts, "empty-layer") };
  const whole =
    (await isWholeLayer(built.mountPoints, [ETC_DIR])) &&
    (await isDir(join(built.emptyLayer, "upper"))) &&
    (await isDir(join(built.emptyLayer, "work")));
  if (whole) return built;
  await removeEntry(dir, basename(parts)); // (what is there, if anything, is not whole)
  const staging = `${parts}.building-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await rootsDir(staging);
  await makeMountPoints(join(staging, "mount-points"));
  const etc = join(staging, "mount-points", ETC_DIR);
  await mkdir(etc);
  await chown(etc, layerIdBase, layerIdBase);
  await chmod(etc, 0o755);
  await resolvConfIn(etc, layerIdBase);
  await mkdir(join(staging, "empty-layer"));
  await rootsDir(join(staging, "empty-layer"));
  for (const d of ["upper", "work"]) await mkdir(join(staging, "empty-layer", d));
  // The image's root owns its upper: what the sandbox writes at / lands there.
  await chown(join(staging, "empty-layer", "upper"), layerIdBase, layerIdBase);
  await chmod(join(staging, "empty-layer", "upper"), 0o755);
  await chown(join(staging, "empty-layer", "work"), layerIdBase, layerIdBase);
  await chmod(join(staging, "empty-layer", "work"), 0o700);
  await rename(staging, parts);
  return built;
}

/** A host root's dir, 0755 (shows as nobody's in a sandbox). */
async function rootsDir(path: string): Promise<void> {
  await chown(path, 0, 0);
  await chmod(path, 0o755);
}

/** `layer` (not there yet) with the runtime's mount points: root's dirs. */
async function makeMountPoints(layer: string): Promise<void> {
  await mkdir(layer);
  await rootsDir(layer);
  for (const name of MOUNT_POINT_NAMES) {
    await mkdir(join(layer, name));
    await rootsDir(join(layer, name));
  }
}

/** Whether `path` is a directory (not a symlink to one). */
const isDir = async (path: string) => (await lstat(path).catch(() => undefined))?.isDirectory() === true;

/**
 * Whether the mount-point layer at `layer` is whole: its mount points, and the directories
 * `dirs` (below one another), real directories, and a regular `resolv.conf` in the last.
 */
async function isWholeLayer(layer: string, dirs: readonly string[]): Promise<boolean> {
  if (!(await isDir(layer))) return false;
  for (const name of MOUNT_POINT_NAMES) if (!(await isDir(join(layer, name)))) return false;
  let dir = layer;
  for (const name of dirs) {
    dir = join(dir, name);
    if (!(await isDir(dir))) return false;
  }
  return (await lstat(join(dir, RESOLV_CONF)).catch(() => undefined))?.isFile() === true;
}

/** The empty file the DNS config is bound over, the image's root's. */
async function resolvConfIn(dir: string, layerIdBase: number): Promise<void> {
  const file = join(dir, RESOLV_CONF);
  await writeFile(file, "", { flag: "wx" });
  await chown(file, layerIdBase, layerIdBase);
  await chmod(file, RESOLV_CONF_MODE);
}

/** The layer for images whose /etc leads to `target`: its name (content-addressed) and DNS mount point. */
export function etcLinkLayerOf(target: readonly EtcTargetDir[]): { name: string; resolvConf: string } {
  // (image-etc.ts answers only such names; checked again here, where they become paths.)
  for (const { name } of target) {
    if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
      throw new Error(`${JSON.stringify(name)} is not a name of a path`);
    }
  }
  if (target.length === 0 || MOUNT_POINT_NAMES.has(target[0]?.name as string)) {
    throw new Error(`/${target.map((d) => d.name).join("/")} is no place for the DNS config`);
  }
  const name = createHash("sha256")
    .update(JSON.stringify([IMAGE_ROOT_PARTS_VERSION, target]))
    .digest("hex")
    .slice(0, 32);
  return { name, resolvConf: `/${target.map((d) => d.name).join("/")}/${RESOLV_CONF}` };
}

/**
 * Builds the layer for images whose /etc leads to `target` at `path` once (aside, then
 * renamed): the mount points, the directories along `target` (the image's owner and mode, or
 * the image's root's 0755 where it has none) and the empty resolv.conf in the last. One found
 * there is used if whole, else made again. (No sandbox of this runtime holds it: see hold.)
 */
async function ensureEtcLinkLayer(path: string, target: readonly EtcTargetDir[], layerIdBase: number): Promise<void> {
  const dirs = target.map((d) => d.name);
  if (await isWholeLayer(path, dirs)) return;
  await removeEntry(dirname(path), basename(path));
  const staging = `${path}.building-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await makeMountPoints(staging);
  let dir = staging;
  for (const { name, owner } of target) {
    dir = join(dir, name); // (a plain name: see etcLinkLayerOf)
    await mkdir(dir);
    await chown(dir, owner?.uid ?? layerIdBase, owner?.gid ?? layerIdBase);
    await chmod(dir, owner?.mode ?? 0o755);
  }
  await resolvConfIn(dir, layerIdBase);
  await rename(staging, path);
}

/** The mount-point layers of one runtime's image roots, under `dir` (the runtime's images dir). */
export class MountPointLayers {
  readonly #dir: string;
  readonly #layerIdBase: number;
  #parts: Promise<ImageRootParts> | undefined;
  /** Layers of images whose /etc is a symlink, by name: how many sandboxes hold each, and its build. */
  readonly #held = new Map<string, { users: number; built: Promise<void> }>();
  /**
   * Layers being removed, by name (a new hold waits for the removal, then builds it again).
   * Set in the same tick as the removal is decided (no sandbox holds the layer), so no hold
   * ever uses a layer being removed.
   */
  readonly #removing = new Map<string, Promise<void>>();

  constructor(dir: string, layerIdBase: number) {
    this.#dir = dir;
    this.#layerIdBase = layerIdBase;
  }

  /** The shared parts, built once. */
  parts(): Promise<ImageRootParts> {
    this.#parts ??= ensureImageRootParts(this.#dir, this.#layerIdBase).catch((error) => {
      this.#parts = undefined;
      throw error;
    });
    return this.#parts;
  }

  /** The mount-point layer for an image whose /etc is `etc`, held until released. */
  async hold(etc: Exclude<ImageEtc, { kind: "refused" }>): Promise<MountPointLayer> {
    const parts = await this.parts();
    if (etc.kind === "dir") return { path: parts.mountPoints, resolvConf: `/${ETC_DIR}/${RESOLV_CONF}`, release() {} };
    const { name, resolvConf } = etcLinkLayerOf(etc.target); // (first: it checks the names)
    const path = join(this.#etcLinkLayers(), name);
    let entry = this.#held.get(name);
    if (!entry) {
      const removal = this.#removing.get(name) ?? Promise.resolve();
      const built = removal
        .then(() => mkdir(this.#etcLinkLayers(), { recursive: true, mode: 0o755 }))
        .then(() => ensureEtcLinkLayer(path, etc.target, this.#layerIdBase));
      entry = { users: 0, built };
      this.#held.set(name, entry);
    }
    const held = entry;
    held.users++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--held.users > 0 || this.#held.get(name) !== held) return;
      this.#held.delete(name);
      // (After its build, whichever way that went: the staging dir of a failed one goes too.)
      this.#remove(name, held.built, [name, `${name}.building-${process.pid}`]).catch(() => {});
    };
    try {
      await held.built;
    } catch (error) {
      release();
      throw error;
    }
    return { path, resolvConf, release };
  }

  /** Settles once every removal under way has ended (for tests). */
  async settled(): Promise<void> {
    await Promise.all([...this.#removing.values()]);
  }

  /**
   * Removes layer `name`'s `entries` (the layer, its staging dir) once `after` has settled;
   * a hold of it meanwhile waits for the removal. Answers the entries removed.
   */
  #remove(name: string, after: Promise<unknown>, entries: readonly string[]): Promise<string[]> {
    const links = this.#etcLinkLayers();
    const removal = after
      .catch(() => {})
      .then(async () => {
        const removed: string[] = [];
        for (const entry of entries) if (await removeEntry(links, entry)) removed.push(entry);
        return removed;
      });
    const settled = removal.then(
      () => {},
      () => {},
    );
    this.#removing.set(name, settled);
    void settled.then(() => {
      if (this.#removing.get(name) === settled) this.#removing.delete(name);
    });
    return removal;
  }

  /**
   * Removes what is no longer any sandbox's: image root parts of other versions or id bases
   * (and staging dirs and removals cut short) in the runtime's images dir; in the current
   * parts, staging dirs and removals cut short and the layers of images whose /etc is a
   * symlink that no sandbox holds. Meant for the runtime's start, once nothing of an earlier
   * run's sandboxes is alive: the runtime sweeps as the engine restores its state, before the
   * server listens, so no sandbox of this run is starting yet. Safe all the same: a layer is
   * claimed for removal (see #removing) in the tick it is found unheld, and a hold that comes
   * later waits for the removal and makes the layer again.
   */
  async sweep(): Promise<string[]> {
    const current = imageRootPartsName(this.#layerIdBase);
    const removed = await removeStaleEntries(this.#dir, staleVersionOf("image-root", current));
    removed.push(
      ...(await removeStaleEntries(join(this.#dir, current), staleStaging)).map((name) => join(current, name)),
    );
    const links = this.#etcLinkLayers();
    for (const entry of await entriesOf(links)) {
      const match = ETC_LINK_ENTRY.exec(entry);
      if (!match) continue;
      let gone: boolean;
      if (match[2] !== undefined) {
        if (!staleStaging(entry)) continue; // (this process's own build or removal, under way)
        gone = await removeEntry(links, entry);
      } else {
        const name = match[1] as string;
        if (this.#held.has(name) || this.#removing.has(name)) continue;
        gone = (await this.#remove(name, Promise.resolve(), [entry])).length > 0;
      }
      if (gone) removed.push(join(current, ETC_LINK_LAYERS, entry));
    }
    return removed;
  }

  #etcLinkLayers(): string {
    return join(this.#dir, imageRootPartsName(this.#layerIdBase), ETC_LINK_LAYERS);
  }
}
