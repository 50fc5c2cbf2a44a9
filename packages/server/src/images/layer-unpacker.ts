/**
 * Unpacks one image layer (an uncompressed tar stream) into an empty directory, following the
 * OCI layer rules, as root, without ever trusting a name in it:
 *
 * - Names are split on "/", "." and empty parts dropped (so "/etc/x" and "./etc/x" are
 *   "etc/x"); a ".." part, a NUL, a part over 255 bytes or a path over PATH_MAX refuses the layer.
 * - Every parent of an entry must be a directory this unpacker made in this layer (it keeps a
 *   map of what it made; nothing else writes in the directory, which is root-only and not yet
 *   in use): an entry through a symlink, a file or a FIFO of the layer ("a -> /etc", then
 *   "a/passwd") refuses the layer. So the kernel never meets a symlink in a parent position.
 *   The last part is only ever created exclusively (O_EXCL|O_NOFOLLOW, mkdir, symlink, link)
 *   and its owner, mode and times are set through its descriptor (or lchown/lutimes): no
 *   symlink is followed anywhere.
 * - A later entry of the same name wins (as Docker does): what was there is removed first,
 *   unless both are directories (then only the metadata changes).
 * - Hard links must name a regular file of this layer. Symlinks are made as they are (their
 *   targets are text, never followed here).
 * - Whiteouts: ".wh.<name>" and a 0/0 character device become overlayfs whiteouts;
 *   ".wh..wh..opq" makes its directory opaque; other ".wh..wh." (aufs) entries are ignored. A
 *   directory made where this layer put a whiteout is opaque (the name was removed, then made
 *   anew). Other device nodes are dropped (a sandbox has its own /dev). FIFOs are kept.
 * - Owners: an image id N is stored as `idBase + N`, so no file is ever owned by a host user;
 *   ids of 65536 and over refuse the layer. Modes are kept whole (setuid, setgid, sticky:
 *   sandboxes mount layers nosuid or in their own user namespace).
 * - Extended attributes of the image (PAX SCHILY.xattr.*) are not kept: not file capabilities,
 *   and never `trusted.overlay.*`, which would let a layer forge overlayfs metadata.
 *
 * Paths are handled as byte strings ("latin1" strings, one char per byte) so that names that
 * are not UTF-8 are kept exactly.
 */

import { execFile } from "node:child_process";
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Header as TarHeader, extract as tarExtract } from "tar-stream";
import { markOpaque, WhiteoutMaker } from "./overlay-markers.js";
import { quoted, storeError } from "./store-errors.js";
import { drainEntry as drain, feedTar, isTarFormatError, type TarEntry } from "./tar-feed.js";

/** Ids a layer's files may have (the size of a sandbox's id map). */
export const MAX_IMAGE_ID = 65_535;

const NAME_MAX = 255;
/**
 * The most entries one layer may have: the unpacker keeps one small record per entry, so this
 * bounds its memory (a full Debian has ~100,000 files).
 */
export const MAX_LAYER_ENTRIES = 1_000_000;
/** Times past ±2^34 s (year 2514) are clamped: beyond what file systems keep. */
const MAX_TIME = 2 ** 34;
const PATH_MAX = 4095;
const OPAQUE = ".wh..wh..opq";
const WHITEOUT_PREFIX = ".wh.";
const AUFS_META_PREFIX = ".wh..wh.";

export interface UnpackOptions {
  /** An empty directory to fill (the layer's root). */
  readonly dir: string;
  /** A directory on the same file system, outside `dir`, for the unpacker's own temporary files. */
  readonly scratchDir: string;
  /** The on-disk id of the image's uid/gid 0. */
  readonly idBase: number;
  /** What the layer is, for messages ("layer sha256:… of docker.io/library/debian"). */
  readonly what: string;
  /** The most entries the layer may have (default {@link MAX_LAYER_ENTRIES}). */
  readonly maxEntries?: number | undefined;
}

export interface UnpackResult {
  /** Bytes of file content and symlink targets (each hard-linked file once). */
  readonly sizeBytes: number;
  /** Device nodes that were dropped (all but whiteouts). */
  readonly droppedDevices: number;
}

type Kind = "dir" | "file" | "symlink" | "whiteout" | "fifo";

interface Node {
  kind: Kind;
  /** Content bytes this node added to the layer's size. */
  size: number;
  /** Directories: made as a parent, without an entry of their own (yet). */
  implicit?: boolean;
  /** Directories: marked opaque. */
  opaque?: boolean;
  /** Directories and FIFOs: set at the end. */
  mtime?: number;
  /** FIFOs (made at the end): their metadata. */
  fifo?: { mode: number; uid: number; gid: number };
}

/** tar-stream's header, with the PAX records it keeps. */
type Header = Omit<TarHeader, "pax" | "type"> & { pax?: Record<string, string> | null; type: TarHeader["type"] | null };
type Entry = TarEntry;

const run = promisify(execFile);

/** Unpacks `tarStream` into `options.dir`; throws an ImageStoreError ("invalid") for a bad layer. */
export async function unpackLayer(tarStream: AsyncIterable<Uint8Array>, options: UnpackOptions): Promise<UnpackResult> {
  const extract = tarExtract({ filenameEncoding: "latin1", allowUnknownFormat: true } as object);
  const unpacker = new Unpacker(options);
  const feeding = feedTar(tarStream, extract);
  try {
    for await (const entry of extract) await unpacker.add(entry);
    await feeding;
    return await unpacker.finish();
  } catch (error) {
    extract.destroy(undefined as unknown as Error);
    await feeding.catch(() => {});
    throw asLayerError(error, options.what);
  } finally {
    unpacker.close();
  }
}

/** The parser's own complaints ("Invalid tar header…") as "invalid"; store errors and the rest as they are. */
function asLayerError(error: unknown, what: string): unknown {
  if (isTarFormatError(error)) {
    return storeError("invalid", `${what} is not a valid tar archive: ${(error as Error).message}`, error);
  }
  return error;
}

/** Shows a byte-string name as text in messages. */
const shown = (name: string): string => quoted(Buffer.from(name, "latin1").toString("utf8"));

class Unpacker {
  readonly #options: UnpackOptions;
  /** The layer root as a byte string. */
  readonly #root: string;
  /** What this layer holds, by path relative to the root ("" is the root). */
  readonly #nodes = new Map<string, Node>([["", { kind: "dir", size: 0 }]]);
  readonly #whiteouts: WhiteoutMaker;
  #size = 0;
  #droppedDevices = 0;
  #entries = 0;

  constructor(options: UnpackOptions) {
    this.#options = options;
    this.#root = Buffer.from(options.dir, "utf8").toString("latin1");
    this.#whiteouts = new WhiteoutMaker(options.scratchDir, options.idBase);
  }

  #path(key: string): Buffer {
    return Buffer.from(key === "" ? this.#root : `${this.#root}/${key}`, "latin1");
  }

  #invalid(why: string): never {
    throw storeError("invalid", `${this.#options.what}: ${why}`);
  }

  /** The entry's name, split and checked. */
  #parts(raw: string, field: string): string[] {
    if (raw.includes("\0")) this.#invalid(`the ${field} ${shown(raw)} contains a NUL byte`);
    const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
    if (parts.includes("..")) this.#invalid(`the ${field} ${shown(raw)} has a ".." part`);
    if (parts.some((p) => p.length > NAME_MAX))
      this.#invalid(`the ${field} ${shown(raw)} has a part over ${NAME_MAX} bytes`);
    if (this.#root.length + 1 + parts.join("/").length > PATH_MAX) {
      this.#invalid(`the ${field} ${shown(raw)} is too long`);
    }
    return parts;
  }

  #id(header: Header, which: "uid" | "gid", name: string): number {
    const pax = header.pax?.[which];
    const id = pax !== undefined ? (/^[0-9]{1,10}$/.test(pax) ? Number(pax) : Number.NaN) : header[which];
    if (id === undefined || !Number.isSafeInteger(id) || id < 0 || id > MAX_IMAGE_ID) {
      this.#invalid(
        `${shown(name)} is owned by ${which} ${pax ?? id}; image files may have ids 0-${MAX_IMAGE_ID} (the ids a sandbox maps)`,
      );
    }
    return this.#options.idBase + id;
  }

  #mtime(header: Header): number {
    const pax = header.pax?.mtime;
    const fromPax = pax !== undefined && /^-?[0-9]+(\.[0-9]+)?$/.test(pax) ? Number(pax) : undefined;
    const seconds = fromPax ?? (header.mtime ? header.mtime.getTime() / 1000 : 0);
    return Number.isFinite(seconds) ? Math.max(-MAX_TIME, Math.min(MAX_TIME, seconds)) : 0;
  }

  async add(entry: Entry): Promise<void> {
    const max = this.#options.maxEntries ?? MAX_LAYER_ENTRIES;
    if (++this.#entries > max) {
      throw storeError("quota", `${this.#options.what} has more than ${max} entries, the store's limit for one layer`);
    }
    const header = entry.header as unknown as Header;
    const name = header.pax?.path !== undefined ? latin1OfUtf8(header.pax.path) : header.name;
    const parts = this.#parts(name, "name");
    const key = parts.join("/");
    const base = parts[parts.length - 1] ?? "";

    if (base.startsWith(WHITEOUT_PREFIX)) return this.#whiteoutEntry(entry, parts);
    if (header.type === "file" || header.type === "contiguous-file") {
      if (key === "") this.#invalid(`the layer's root ${shown(name)} is a file`);
      return this.#file(entry, header, key, name);
    }
    await drain(entry);
    switch (header.type) {
      case "directory":
        return this.#directory(header, key, name);
      case "symlink":
        if (key === "") this.#invalid(`the layer's root ${shown(name)} is a symlink`);
        return this.#symlink(header, key, name);
      case "link":
        if (key === "") this.#invalid(`the layer's root ${shown(name)} is a hard link`);
        return this.#hardLink(header, key, name);
      case "character-device":
        if (key === "") this.#invalid(`the layer's root ${shown(name)} is a device`);
        if (header.devmajor === 0 && header.devminor === 0) return this.#whiteout(key);
        this.#droppedDevices++;
        return;
      case "block-device":
        this.#droppedDevices++;
        return;
      case "fifo":
        if (key === "") this.#invalid(`the layer's root ${shown(name)} is a FIFO`);
        return this.#fifo(header, key, name);
      default:
        this.#invalid(`${shown(name)} has an entry type the store does not know (${String(header.type)})`);
    }
  }

  /** ".wh..wh..opq", ".wh.<name>" and aufs' ".wh..wh.*" (ignored). */
  async #whiteoutEntry(entry: Entry, parts: string[]): Promise<void> {
    await drain(entry);
    const base = parts[parts.length - 1] as string;
    const parent = parts.slice(0, -1).join("/");
    if (base === OPAQUE) {
      this.#ensureDir(parent);
      (this.#nodes.get(parent) as Node).opaque = true;
      return;
    }
    if (base.startsWith(AUFS_META_PREFIX)) return;
    const hidden = base.slice(WHITEOUT_PREFIX.length);
    if (hidden === "." || hidden === "..") this.#invalid(`the whiteout ${shown(parts.join("/"))} names ${hidden}`);
    await this.#whiteout(parent === "" ? hidden : `${parent}/${hidden}`);
  }

  /** Makes `key` a whiteout, unless this layer has something of that name (which then wins). */
  async #whiteout(key: string): Promise<void> {
    const existing = this.#nodes.get(key);
    if (existing !== undefined) return;
    this.#ensureParent(key);
    await this.#whiteouts.make(this.#path(key));
    this.#nodes.set(key, { kind: "whiteout", size: 0 });
  }

  async #file(entry: Entry, header: Header, key: string, name: string): Promise<void> {
    this.#ensureParent(key);
    this.#replace(key);
    const uid = this.#id(header, "uid", name);
    const gid = this.#id(header, "gid", name);
    const fd = openSync(
      this.#path(key),
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
    const node: Node = { kind: "file", size: 0 };
    this.#nodes.set(key, node);
    try {
      for await (const data of entry) {
        const chunk = data as Buffer;
        let offset = 0;
        while (offset < chunk.length) offset += writeSync(fd, chunk, offset);
        node.size += chunk.length;
        this.#size += chunk.length;
      }
      fchownSync(fd, uid, gid);
      fchmodSync(fd, (header.mode ?? 0o644) & 0o7777);
      const mtime = this.#mtime(header);
      futimesSync(fd, mtime, mtime);
    } finally {
      closeSync(fd);
    }
  }

  #directory(header: Header, key: string, name: string): void {
    const uid = this.#id(header, "uid", name);
    const gid = this.#id(header, "gid", name);
    const existing = this.#nodes.get(key);
    if (existing?.kind !== "dir") {
      this.#ensureParent(key);
      const wasWhiteout = existing?.kind === "whiteout";
      this.#replace(key);
      mkdirSync(this.#path(key), 0o700);
      this.#nodes.set(key, { kind: "dir", size: 0, opaque: wasWhiteout });
    }
    const node = this.#nodes.get(key) as Node;
    node.implicit = false;
    node.mtime = this.#mtime(header);
    this.#setDirOwnerAndMode(key, uid, gid, (header.mode ?? 0o755) & 0o7777);
  }

  #setDirOwnerAndMode(key: string, uid: number, gid: number, mode: number): void {
    const fd = openSync(this.#path(key), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      fchownSync(fd, uid, gid);
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
  }

  #symlink(header: Header, key: string, name: string): void {
    const target = header.pax?.linkpath !== undefined ? latin1OfUtf8(header.pax.linkpath) : (header.linkname ?? "");
    if (target === "" || target.includes("\0") || target.length > PATH_MAX) {
      this.#invalid(`the symlink ${shown(name)} has an empty, NUL-bearing or too long target`);
    }
    const uid = this.#id(header, "uid", name);
    const gid = this.#id(header, "gid", name);
    this.#ensureParent(key);
    this.#replace(key);
    const path = this.#path(key);
    symlinkSync(Buffer.from(target, "latin1"), path);
    this.#nodes.set(key, { kind: "symlink", size: target.length });
    this.#size += target.length;
    lchownSync(path, uid, gid);
    const mtime = this.#mtime(header);
    lutimesSync(path, mtime, mtime);
  }

  #hardLink(header: Header, key: string, name: string): void {
    const rawTarget = header.pax?.linkpath !== undefined ? latin1OfUtf8(header.pax.linkpath) : (header.linkname ?? "");
    const targetKey = this.#parts(rawTarget, "hard link target").join("/");
    if (targetKey === key) this.#invalid(`the hard link ${shown(name)} points to itself`);
    const refuse = () =>
      this.#invalid(
        `the hard link ${shown(name)} points to ${shown(rawTarget)}, which is not a regular file of this layer`,
      );
    if (this.#nodes.get(targetKey)?.kind !== "file") refuse();
    this.#ensureParent(key);
    this.#replace(key);
    // Replacing `key` may have removed the target (a directory holding it): check again.
    if (this.#nodes.get(targetKey)?.kind !== "file") refuse();
    linkSync(this.#path(targetKey), this.#path(key));
    this.#nodes.set(key, { kind: "file", size: 0 });
  }

  #fifo(header: Header, key: string, name: string): void {
    const uid = this.#id(header, "uid", name);
    const gid = this.#id(header, "gid", name);
    this.#ensureParent(key);
    this.#replace(key);
    // Made at the end (by mkfifo, which Node lacks); a parent position refuses it like a file.
    this.#nodes.set(key, {
      kind: "fifo",
      size: 0,
      mtime: this.#mtime(header),
      fifo: { mode: (header.mode ?? 0o644) & 0o7777, uid, gid },
    });
  }

  /** Makes sure `key`'s parent is a directory of this layer (see {@link #ensureDir}). */
  #ensureParent(key: string): void {
    const slash = key.lastIndexOf("/");
    this.#ensureDir(slash === -1 ? "" : key.slice(0, slash));
  }

  /**
   * Makes sure `key` is a directory this unpacker made, making it and its missing parents
   * (0755, owned by the image's root) as needed. A parent that is a symlink, file or FIFO of
   * this layer refuses the entry; one that is a whiteout becomes an opaque directory.
   */
  #ensureDir(key: string): void {
    if (this.#nodes.get(key)?.kind === "dir") return; // its parents are, too
    const parts = key.split("/");
    let prefix = "";
    for (const part of parts) {
      prefix = prefix === "" ? part : `${prefix}/${part}`;
      const node = this.#nodes.get(prefix);
      if (node?.kind === "dir") continue;
      if (node !== undefined && node.kind !== "whiteout") {
        this.#invalid(`${shown(key)} goes through ${shown(prefix)}, which is a ${node.kind} in this layer`);
      }
      if (node !== undefined) this.#replace(prefix);
      mkdirSync(this.#path(prefix), 0o700);
      this.#setDirOwnerAndMode(prefix, this.#options.idBase, this.#options.idBase, 0o755);
      this.#nodes.set(prefix, { kind: "dir", size: 0, implicit: true, opaque: node !== undefined });
    }
  }

  /** Removes whatever this layer has at `key` (a directory with all it holds). */
  #replace(key: string): void {
    const node = this.#nodes.get(key);
    if (node === undefined) return;
    if (node.kind === "dir") {
      rmSync(this.#path(key), { recursive: true, force: true });
      const prefix = `${key}/`;
      for (const [k, n] of this.#nodes) {
        if (k.startsWith(prefix)) {
          this.#size -= n.size;
          this.#nodes.delete(k);
        }
      }
    } else if (node.kind !== "fifo") {
      unlinkSync(this.#path(key));
    }
    this.#size -= node.size;
    this.#nodes.delete(key);
  }

  /** FIFOs, opaque marks, then directory times (last: making things in a directory changes its mtime). */
  async finish(): Promise<UnpackResult> {
    const fifos = [...this.#nodes].filter(([, n]) => n.kind === "fifo");
    if (fifos.length > 0) {
      const scratch = fifos.map((_, i) => join(this.#options.scratchDir, `fifo-${i}`));
      await run("mkfifo", ["-m", "0600", "--", ...scratch]);
      fifos.forEach(([key, node], i) => {
        const path = this.#path(key);
        renameSync(scratch[i] as string, path);
        const { mode, uid, gid } = node.fifo as NonNullable<Node["fifo"]>;
        // The FIFO just renamed there (no symlink): chmod and utimes may take the path.
        lchownSync(path, uid, gid);
        chmodSync(path, mode);
        utimesSync(path, node.mtime ?? 0, node.mtime ?? 0);
      });
    }
    await markOpaque([...this.#nodes].filter(([, n]) => n.kind === "dir" && n.opaque).map(([k]) => this.#path(k)));
    const dirs = [...this.#nodes]
      .filter(([, n]) => n.kind === "dir" && n.mtime !== undefined)
      .sort(([a], [b]) => depth(b) - depth(a));
    for (const [key, node] of dirs) utimesSync(this.#path(key), node.mtime as number, node.mtime as number);
    return { sizeBytes: this.#size, droppedDevices: this.#droppedDevices };
  }

  close(): void {
    this.#whiteouts.close();
  }
}

const depth = (key: string): number => (key === "" ? 0 : key.split("/").length);

/** A PAX value (UTF-8 text) as a byte string. */
const latin1OfUtf8 = (text: string): string => Buffer.from(text, "utf8").toString("latin1");
