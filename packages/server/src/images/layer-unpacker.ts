/**
 * Unpacks one image layer (an uncompressed tar stream) into an empty directory, following the
 * OCI layer rules, as root, without ever trusting a name in it:
 *
 * - Names are split on "/", "." and empty parts dropped (so "/etc/x" and "./etc/x" are
 *   "etc/x"); a ".." part, a NUL, a part over 255 bytes or a path over PATH_MAX refuses the layer.
 * - Every parent of an entry must be a directory this unpacker made in this layer (it keeps a
 *   tree of what it made; nothing else writes in the directory, which is root-only and not yet
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
 * - Hostile sizes: every entry and every directory made for one counts against `maxEntries`,
 *   the bytes of the names kept against `maxNameBytes` ("quota" past either): the tree stays
 *   small. The work is synchronous file-system calls, each as slow as its path is deep, so the
 *   unpacker yields to the event loop every few milliseconds: a layer of many deep names never
 *   stalls the server, whose other work goes on.
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
  rmdirSync,
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
 * The most entries one layer may have, the directories made for its entries' names included:
 * the unpacker keeps one small record of each (a full Debian has ~100,000 files).
 */
export const MAX_LAYER_ENTRIES = 1_000_000;
/** The most bytes of names one layer's records may hold (a full Debian's take ~1.5 MB). */
export const MAX_LAYER_NAME_BYTES = 64 * 1024 * 1024;
/** Times past ±2^34 s (year 2514) are clamped: beyond what file systems keep. */
const MAX_TIME = 2 ** 34;
const PATH_MAX = 4095;
/** How long the unpacker works before it lets the event loop run. */
const SLICE_MS = 10;
/** FIFOs made, or opaque directories marked, by one run of mkfifo or setfattr. */
const BATCH = 1000;
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
  /** The most bytes of names the layer may have in all (default {@link MAX_LAYER_NAME_BYTES}). */
  readonly maxNameBytes?: number | undefined;
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
  /** Directories: what they hold, by name. */
  children?: Map<string, Node>;
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
  // Awaited once the entries are read; a source that fails before then is not an unhandled rejection.
  feeding.catch(() => {});
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

/** A directory node's children (every directory node has them). */
const childrenOf = (dir: Node): Map<string, Node> => dir.children as Map<string, Node>;

class Unpacker {
  readonly #options: UnpackOptions;
  /** The layer root as a byte string. */
  readonly #root: string;
  /** What this layer holds: the root directory, and under it everything the unpacker made. */
  readonly #tree: Node = { kind: "dir", size: 0, children: new Map() };
  readonly #whiteouts: WhiteoutMaker;
  readonly #maxEntries: number;
  readonly #maxNameBytes: number;
  #size = 0;
  #droppedDevices = 0;
  /** Entries seen, and directories made for their names. */
  #entries = 0;
  /** Bytes of the names recorded in the tree (every time one was). */
  #nameBytes = 0;
  /** When the unpacker last let the event loop run. */
  #sliceStart = performance.now();

  constructor(options: UnpackOptions) {
    this.#options = options;
    this.#root = Buffer.from(options.dir, "utf8").toString("latin1");
    this.#whiteouts = new WhiteoutMaker(options.scratchDir, options.idBase);
    this.#maxEntries = options.maxEntries ?? MAX_LAYER_ENTRIES;
    this.#maxNameBytes = options.maxNameBytes ?? MAX_LAYER_NAME_BYTES;
  }

  #path(parts: readonly string[]): Buffer {
    return Buffer.from(parts.length === 0 ? this.#root : `${this.#root}/${parts.join("/")}`, "latin1");
  }

  #invalid(why: string): never {
    throw storeError("invalid", `${this.#options.what}: ${why}`);
  }

  /** Lets the event loop run when the unpacker has had it for a while (file-system calls are synchronous). */
  async #yield(): Promise<void> {
    if (performance.now() - this.#sliceStart < SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.#sliceStart = performance.now();
  }

  /** Counts one more entry, or directory made for one, against the limit. */
  #count(): void {
    if (++this.#entries > this.#maxEntries) {
      throw storeError(
        "quota",
        `${this.#options.what} has more than ${this.#maxEntries} entries, the store's limit for one layer`,
      );
    }
  }

  /** Records `node` as `name` in `dir`, its name counted against the limit. */
  #keep(dir: Node, name: string, node: Node): void {
    this.#nameBytes += name.length;
    if (this.#nameBytes > this.#maxNameBytes) {
      throw storeError(
        "quota",
        `${this.#options.what} has names of more than ${this.#maxNameBytes} bytes in all, the store's limit for one layer`,
      );
    }
    childrenOf(dir).set(name, node);
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
    this.#count();
    await this.#yield();
    const header = entry.header as unknown as Header;
    const name = header.pax?.path !== undefined ? latin1OfUtf8(header.pax.path) : header.name;
    const parts = this.#parts(name, "name");
    const base = parts[parts.length - 1] ?? "";

    if (base.startsWith(WHITEOUT_PREFIX)) return this.#whiteoutEntry(entry, parts);
    if (header.type === "file" || header.type === "contiguous-file") {
      if (parts.length === 0) this.#invalid(`the layer's root ${shown(name)} is a file`);
      return this.#file(entry, header, parts, name);
    }
    await drain(entry);
    switch (header.type) {
      case "directory":
        return this.#directory(header, parts, name);
      case "symlink":
        if (parts.length === 0) this.#invalid(`the layer's root ${shown(name)} is a symlink`);
        return this.#symlink(header, parts, name);
      case "link":
        if (parts.length === 0) this.#invalid(`the layer's root ${shown(name)} is a hard link`);
        return this.#hardLink(header, parts, name);
      case "character-device":
        if (parts.length === 0) this.#invalid(`the layer's root ${shown(name)} is a device`);
        if (header.devmajor === 0 && header.devminor === 0) return this.#whiteout(parts);
        this.#droppedDevices++;
        return;
      case "block-device":
        this.#droppedDevices++;
        return;
      case "fifo":
        if (parts.length === 0) this.#invalid(`the layer's root ${shown(name)} is a FIFO`);
        return this.#fifo(header, parts, name);
      default:
        this.#invalid(`${shown(name)} has an entry type the store does not know (${String(header.type)})`);
    }
  }

  /** ".wh..wh..opq", ".wh.<name>" and aufs' ".wh..wh.*" (ignored). */
  async #whiteoutEntry(entry: Entry, parts: string[]): Promise<void> {
    await drain(entry);
    const base = parts[parts.length - 1] as string;
    const parent = parts.slice(0, -1);
    if (base === OPAQUE) {
      (await this.#dir(parent)).opaque = true;
      return;
    }
    if (base.startsWith(AUFS_META_PREFIX)) return;
    const hidden = base.slice(WHITEOUT_PREFIX.length);
    if (hidden === "") this.#invalid(`the whiteout ${shown(parts.join("/"))} names nothing`);
    if (hidden === "." || hidden === "..") this.#invalid(`the whiteout ${shown(parts.join("/"))} names ${hidden}`);
    await this.#whiteout([...parent, hidden]);
  }

  /** Makes `parts` a whiteout, unless this layer has something of that name (which then wins). */
  async #whiteout(parts: string[]): Promise<void> {
    const dir = await this.#dir(parts.slice(0, -1));
    const base = parts[parts.length - 1] as string;
    if (childrenOf(dir).has(base)) return;
    this.#keep(dir, base, { kind: "whiteout", size: 0 });
    await this.#whiteouts.make(this.#path(parts));
  }

  async #file(entry: Entry, header: Header, parts: string[], name: string): Promise<void> {
    const dir = await this.#dir(parts.slice(0, -1));
    const base = parts[parts.length - 1] as string;
    await this.#remove(dir, base, parts);
    const uid = this.#id(header, "uid", name);
    const gid = this.#id(header, "gid", name);
    const node: Node = { kind: "file", size: 0 };
    this.#keep(dir, base, node);
    const fd = openSync(
      this.#path(parts),
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
    try {
      for await (const data of entry) {
        const chunk = data as Buffer;
        let offset = 0;
        while (offset < chunk.length) offset += writeSync(fd, chunk, offset);
        node.size += chunk.length;
        this.#size += chunk.length;
        await this.#yield();
      }
      fchownSync(fd, uid, gid);
      fchmodSync(fd, (header.mode ?? 0o644) & 0o7777);
      const mtime = this.#mtime(header);
      futimesSync(fd, mtime, mtime);
    } finally {
      closeSync(fd);
    }
  }

  async #directory(header: Header, parts: string[], name: string): Promise<void> {
    const uid = this.#id(header, "uid", name);
    const gid = this.#id(header, "gid", name);
    let node = this.#tree;
    if (parts.length > 0) {
      const dir = await this.#dir(parts.slice(0, -1));
      const base = parts[parts.length - 1] as string;
      const existing = childrenOf(dir).get(base);
      if (existing?.kind === "dir") node = existing;
      else {
        await this.#remove(dir, base, parts);
        node = { kind: "dir", size: 0, children: new Map(), opaque: existing?.kind === "whiteout" };
        this.#keep(dir, base, node);
        mkdirSync(this.#path(parts), 0o700);
      }
    }
    node.mtime = this.#mtime(header);
    this.#setDirOwnerAndMode(parts, uid, gid, (header.mode ?? 0o755) & 0o7777);
  }

  #setDirOwnerAndMode(parts: readonly string[], uid: number, gid: number, mode: number): void {
    const fd = openSync(this.#path(parts), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      fchownSync(fd, uid, gid);
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
  }

  async #symlink(header: Header, parts: string[], name: string): Promise<void> {
    const target = header.pax?.linkpath !== undefined ? latin1OfUtf8(header.pax.linkpath) : (header.linkname ?? "");
    if (target === "" || target.includes("\0") || target.length > PATH_MAX) {
      this.#invalid(`the symlink ${shown(name)} has an empty, NUL-bearing or too long target`);
    }
    const uid = this.#id(header, "uid", name);
    const gid = this.#id(header, "gid", name);
    const dir = await this.#dir(parts.slice(0, -1));
    const base = parts[parts.length - 1] as string;
    await this.#remove(dir, base, parts);
    this.#keep(dir, base, { kind: "symlink", size: target.length });
    const path = this.#path(parts);
    symlinkSync(Buffer.from(target, "latin1"), path);
    this.#size += target.length;
    lchownSync(path, uid, gid);
    const mtime = this.#mtime(header);
    lutimesSync(path, mtime, mtime);
  }

  async #hardLink(header: Header, parts: string[], name: string): Promise<void> {
    const rawTarget = header.pax?.linkpath !== undefined ? latin1OfUtf8(header.pax.linkpath) : (header.linkname ?? "");
    const target = this.#parts(rawTarget, "hard link target");
    if (target.join("/") === parts.join("/")) this.#invalid(`the hard link ${shown(name)} points to itself`);
    const refuse = () =>
      this.#invalid(
        `the hard link ${shown(name)} points to ${shown(rawTarget)}, which is not a regular file of this layer`,
      );
    if (this.#lookup(target)?.kind !== "file") refuse();
    const dir = await this.#dir(parts.slice(0, -1));
    const base = parts[parts.length - 1] as string;
    await this.#remove(dir, base, parts);
    // Removing what was at `parts` may have removed the target (a directory holding it): look again.
    if (this.#lookup(target)?.kind !== "file") refuse();
    this.#keep(dir, base, { kind: "file", size: 0 });
    linkSync(this.#path(target), this.#path(parts));
  }

  async #fifo(header: Header, parts: string[], name: string): Promise<void> {
    const uid = this.#id(header, "uid", name);
    const gid = this.#id(header, "gid", name);
    const dir = await this.#dir(parts.slice(0, -1));
    const base = parts[parts.length - 1] as string;
    await this.#remove(dir, base, parts);
    // Made at the end (by mkfifo, which Node lacks); a parent position refuses it like a file.
    this.#keep(dir, base, {
      kind: "fifo",
      size: 0,
      mtime: this.#mtime(header),
      fifo: { mode: (header.mode ?? 0o644) & 0o7777, uid, gid },
    });
  }

  /** What this layer has at `parts`, through directories only. */
  #lookup(parts: readonly string[]): Node | undefined {
    let node: Node | undefined = this.#tree;
    for (const part of parts) {
      node = node.kind === "dir" ? childrenOf(node).get(part) : undefined;
      if (node === undefined) return undefined;
    }
    return node;
  }

  /**
   * The directory `parts` of this layer, made with its missing parents (0755, owned by the
   * image's root) as needed. A parent that is a symlink, file or FIFO of this layer refuses
   * the entry; one that is a whiteout becomes an opaque directory.
   */
  async #dir(parts: readonly string[]): Promise<Node> {
    let dir = this.#tree;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string;
      const node = childrenOf(dir).get(part);
      if (node?.kind === "dir") {
        dir = node;
        continue;
      }
      const prefix = parts.slice(0, i + 1);
      if (node !== undefined && node.kind !== "whiteout") {
        this.#invalid(
          `${shown(parts.join("/"))} goes through ${shown(prefix.join("/"))}, which is a ${node.kind} in this layer`,
        );
      }
      if (node !== undefined) await this.#remove(dir, part, prefix);
      this.#count();
      const made: Node = { kind: "dir", size: 0, children: new Map(), opaque: node !== undefined };
      this.#keep(dir, part, made);
      mkdirSync(this.#path(prefix), 0o700);
      this.#setDirOwnerAndMode(prefix, this.#options.idBase, this.#options.idBase, 0o755);
      dir = made;
      await this.#yield();
    }
    return dir;
  }

  /**
   * Removes whatever this layer has as `name` in `dir` (at `parts`): a directory with all it
   * holds, each thing the unpacker made in it unlinked by name (nothing else is there).
   */
  async #remove(dir: Node, name: string, parts: readonly string[]): Promise<void> {
    const node = childrenOf(dir).get(name);
    if (node === undefined) return;
    for (const visit of walk(node, [...parts])) {
      const path = () => this.#path(visit.parts);
      if (visit.node.kind === "dir") {
        if (visit.post) rmdirSync(path());
      } else if (!visit.post) {
        if (visit.node.kind !== "fifo") unlinkSync(path()); // a FIFO is not on disk yet
      }
      if (!visit.post) this.#size -= visit.node.size;
      await this.#yield();
    }
    childrenOf(dir).delete(name);
  }

  /** FIFOs and opaque marks, then directory times (last: making things in a directory changes its mtime). */
  async finish(): Promise<UnpackResult> {
    const fifos: { path: Buffer; node: Node }[] = [];
    const opaque: Buffer[] = [];
    for (const { node, parts, post } of walk(this.#tree, [])) {
      if (post) continue;
      if (node.kind === "fifo") fifos.push({ path: this.#path(parts), node });
      else if (node.kind === "dir" && node.opaque) opaque.push(this.#path(parts));
      if (fifos.length >= BATCH) await this.#makeFifos(fifos.splice(0));
      if (opaque.length >= BATCH) await markOpaque(opaque.splice(0));
      await this.#yield();
    }
    await this.#makeFifos(fifos);
    await markOpaque(opaque);
    // Children before their parents (after: a directory's mtime changes when something is made in it).
    for (const { node, parts, post } of walk(this.#tree, [])) {
      if (post && node.kind === "dir" && node.mtime !== undefined) {
        utimesSync(this.#path(parts), node.mtime, node.mtime);
      }
      await this.#yield();
    }
    return { sizeBytes: this.#size, droppedDevices: this.#droppedDevices };
  }

  /** Makes `fifos` (each path's parent a directory the unpacker made, nothing there yet). */
  async #makeFifos(fifos: readonly { path: Buffer; node: Node }[]): Promise<void> {
    if (fifos.length === 0) return;
    const scratch = fifos.map((_, i) => join(this.#options.scratchDir, `fifo-${i}`));
    await run("mkfifo", ["-m", "0600", "--", ...scratch]);
    fifos.forEach(({ path, node }, i) => {
      renameSync(scratch[i] as string, path);
      const { mode, uid, gid } = node.fifo as NonNullable<Node["fifo"]>;
      // The FIFO just renamed there (no symlink): chmod and utimes may take the path.
      lchownSync(path, uid, gid);
      chmodSync(path, mode);
      utimesSync(path, node.mtime ?? 0, node.mtime ?? 0);
    });
  }

  close(): void {
    this.#whiteouts.close();
  }
}

interface Visit {
  readonly node: Node;
  /** The node's path parts: one array, changed as the walk goes on (read it at once). */
  readonly parts: readonly string[];
  /** Whether the node's children (if any) were visited already. */
  readonly post: boolean;
}

/**
 * Every node from `top` (at `parts`) down, depth first: each node visited before its children
 * and again after them. An explicit stack, so a deep tree costs memory only as deep as it is.
 */
function* walk(top: Node, parts: string[]): Generator<Visit, void, undefined> {
  const stack: { node: Node; children: Iterator<[string, Node]> }[] = [];
  const enter = function* (node: Node): Generator<Visit, void, undefined> {
    yield { node, parts, post: false };
    if (node.kind === "dir") stack.push({ node, children: childrenOf(node).entries() });
    else yield { node, parts, post: true };
  };
  yield* enter(top);
  while (stack.length > 0) {
    const frame = stack[stack.length - 1] as (typeof stack)[number];
    const next = frame.children.next();
    if (next.done) {
      stack.pop();
      yield { node: frame.node, parts, post: true };
      if (stack.length > 0) parts.pop();
      continue;
    }
    const [name, child] = next.value;
    parts.push(name);
    yield* enter(child);
    if (child.kind !== "dir") parts.pop();
  }
}

/** A PAX value (UTF-8 text) as a byte string. */
const latin1OfUtf8 = (text: string): string => Buffer.from(text, "utf8").toString("latin1");
