/**
 * The fake's in-memory filesystem: one tree per sandbox, of files (bytes, mode, mtime),
 * directories, symlinks and a null device. It behaves like the real sandbox's files as its
 * agent sees them: paths resolve like Linux inside the tree (`..` stops at the root, symlinks
 * are followed with at most 40 per path), the sandbox user owns everything and has no
 * capabilities (so the owner permission bits apply), /usr is a read-only mount (as the server
 * binds the image's /usr), and failures are FakeFsErrors with the
 * errno and kind the real server reports. The high-level calls (describe, list, makeDirectory,
 * remove, read, upload, watch) follow the agent's steps one by one, so edge cases match too.
 *
 * Every change is published as inotify-like events (on a directory's entry, or on a directory
 * itself); a FakeWatch turns them into the Watch RPC's events the way the agent does.
 * Browser-safe: no node: imports.
 */
import {
  type FsErrorKind,
  type RuntimeFileInfo,
  RuntimeFsError,
  type RuntimeWatchEvent,
  WatchQueue,
} from "@sbx/server-kit";

const ERRNO = {
  ENOENT: ["not_found", "No such file or directory"],
  EISDIR: ["is_a_directory", "Is a directory"],
  ENOTDIR: ["not_a_directory", "Not a directory"],
  ENOTEMPTY: ["directory_not_empty", "Directory not empty"],
  EEXIST: ["already_exists", "File exists"],
  EACCES: ["permission_denied", "Permission denied"],
  EROFS: ["permission_denied", "Read-only file system"],
  ELOOP: ["other", "Too many levels of symbolic links"],
  ENAMETOOLONG: ["other", "File name too long"],
  EINVAL: ["other", "Invalid argument"],
  EBUSY: ["other", "Device or resource busy"],
  ENOSPC: ["no_space", "No space left on device"],
} as const satisfies Record<string, readonly [FsErrorKind, string]>;

export type Errno = keyof typeof ERRNO;

/** A failed file operation: an errno, the kind the wire reports, and a message naming the path. */
export class FakeFsError extends RuntimeFsError {
  /** The errno's text, e.g. "No such file or directory". */
  readonly strerror: string;

  constructor(
    readonly code: Errno,
    path: string,
    options: { message?: string; kind?: FsErrorKind } = {},
  ) {
    const [kind, text] = ERRNO[code];
    super(options.kind ?? kind, options.message ?? `${path}: ${text}`);
    this.name = "FakeFsError";
    this.strerror = text;
  }
}

/** Linux's default umask applied: new files 0o644, new directories 0o755. */
const FILE_MODE = 0o644;
const DIR_MODE = 0o755;
const MAX_SYMLINKS = 40;
const MAX_NAME_BYTES = 255;
/** Directories report the size ext4 gives an empty one. */
const DIR_SIZE = 4096;
/** The name part the SDK's uploads use for their temporary files (".NAME.sbx-upload-ID"). */
const UPLOAD_MARK = ".sbx-upload-";

const R = 0o400;
const W = 0o200;
const X = 0o100;

const encoder = new TextEncoder();
const now = () => Date.now();

abstract class BaseNode {
  abstract readonly type: RuntimeFileInfo["type"];
  mtimeMs = now();
  constructor(public mode: number) {}
}

export class FileNode extends BaseNode {
  readonly type = "file";
  #buffer = new Uint8Array(0);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** The current contents (a view: copy it before the file changes again). */
  bytes(): Uint8Array {
    return this.#buffer.subarray(0, this.#size);
  }

  append(data: Uint8Array): void {
    if (data.byteLength === 0) return;
    const needed = this.#size + data.byteLength;
    if (needed > this.#buffer.byteLength) {
      const grown = new Uint8Array(Math.max(needed, this.#buffer.byteLength * 2, 256));
      grown.set(this.bytes());
      this.#buffer = grown;
    }
    this.#buffer.set(data, this.#size);
    this.#size = needed;
    this.mtimeMs = now();
  }

  truncate(): void {
    this.#buffer = new Uint8Array(0); // earlier views keep their bytes
    this.#size = 0;
    this.mtimeMs = now();
  }
}

export class DirNode extends BaseNode {
  readonly type = "directory";
  readonly entries = new Map<string, Node>();
  /** Where it hangs in the tree (undefined for the root and for removed directories). */
  parent: DirNode | undefined;
  name = "";
  /** The root of a read-only mount: nothing in it or below it may change, and it stays put. */
  readOnlyMount = false;
}

export class LinkNode extends BaseNode {
  readonly type = "symlink";
  constructor(readonly target: string) {
    super(0o777);
  }
}

/** /dev/null: reads are empty, writes vanish. */
export class NullDevice extends BaseNode {
  readonly type = "other";
}

export type Node = FileNode | DirNode | LinkNode | NullDevice;

/** Where a path leads: the directory holding its last component, that name, and what is there. */
interface Resolved {
  readonly dir: DirNode;
  /** Undefined when the path ends at "/", "." or "..": `node` is that directory itself. */
  readonly name: string | undefined;
  readonly node: Node | undefined;
}

/** An inotify-like change: to entry `name` of `dir`, or (name "") to `dir` itself. */
export interface RawEvent {
  readonly dir: DirNode;
  readonly name: string;
  readonly kind: "create" | "modify" | "delete" | "moved_from" | "moved_to" | "delete_self" | "move_self";
  /** Pairs a moved_from with its moved_to. */
  readonly cookie: number;
  /** The entry now there (create, moved_to). */
  readonly node?: Node | undefined;
}

/** An upload in progress: bytes go to a temporary file beside the path, then one rename. */
export interface FakeUpload {
  write(data: Uint8Array): void;
  /** Moves the temporary file onto the path (keeping an existing file's mode). */
  commit(): void;
  /** Removes the temporary file. */
  abort(): void;
}

/** A file opened for writing by a process (`>` / `>>`). */
export interface FakeFileWriter {
  write(data: Uint8Array): void;
}

// Python's os.path helpers, which the agent uses on request paths.
const pySplit = (path: string): [string, string] => {
  const i = path.lastIndexOf("/") + 1;
  let head = path.slice(0, i);
  if (head && !/^\/+$/.test(head)) head = head.replace(/\/+$/, "");
  return [head, path.slice(i)];
};
const basename = (path: string) => path.slice(path.lastIndexOf("/") + 1);
const dirname = (path: string) => pySplit(path)[0];
export const joinPath = (dir: string, name: string) =>
  dir === "" || dir.endsWith("/") ? dir + name : `${dir}/${name}`;

/** Python's str order (by code point), which the agent sorts names with. */
export function byCodePoint(a: string, b: string): number {
  const x = a[Symbol.iterator]();
  const y = b[Symbol.iterator]();
  for (;;) {
    const p = x.next();
    const q = y.next();
    if (p.done || q.done) return p.done ? (q.done ? 0 : -1) : 1;
    const d = (p.value.codePointAt(0) as number) - (q.value.codePointAt(0) as number);
    if (d !== 0) return d;
  }
}

/** The temporary upload file `name` stands for, if it is one. */
const uploadTarget = (name: string): string | undefined => {
  const at = name.indexOf(UPLOAD_MARK);
  return name.startsWith(".") && at > 1 ? name.slice(1, at) : undefined;
};

export interface FakeFilesystemOptions {
  /** Bytes the files may hold in all (the sandbox's `diskMiB`); writes past it fail with ENOSPC. */
  readonly capacityBytes?: number | undefined;
}

export class FakeFilesystem {
  readonly root = new DirNode(DIR_MODE);
  readonly #watches = new Set<FakeWatch>();
  readonly #capacityBytes: number | undefined;
  #cookie = 0;
  #uploads = 0;

  constructor(options: FakeFilesystemOptions = {}) {
    this.#capacityBytes = options.capacityBytes;
    for (const dir of ["/dev", "/etc", "/home", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var/tmp", "/work"]) {
      this.makeParents(dir);
    }
    for (const dir of ["/usr/bin", "/usr/lib", "/usr/local", "/usr/share"]) this.makeParents(dir);
    this.#dirAt("/usr").readOnlyMount = true;
    this.#attach(this.#dirAt("/dev"), "null", new NullDevice(0o666));
    const hostname = new FileNode(FILE_MODE);
    hostname.append(encoder.encode("sandbox\n"));
    this.#attach(this.#dirAt("/etc"), "hostname", hostname);
  }

  /** Ends every watch (the sandbox stopped). */
  close(): void {
    for (const watch of this.#watches) watch.end();
    this.#watches.clear();
  }

  // --- the agent's calls -----------------------------------------------------------------

  /** Describes `path`; a symlink is described, not followed. */
  stat(path: string): RuntimeFileInfo {
    return this.#describe(path, this.#existing(path, false));
  }

  /** Describes what `path` leads to (following symlinks), like os.stat. */
  statFollowing(path: string): RuntimeFileInfo {
    return this.#describe(path, this.#existing(path, true));
  }

  /** The entries of a directory (following a symlink to it), symlinks described, sorted by name. */
  list(path: string): RuntimeFileInfo[] {
    const dir = this.#existing(path, true);
    if (dir.type !== "directory") {
      throw new FakeFsError("ENOTDIR", path, { message: `${path}: not a directory` });
    }
    if (!(dir.mode & R)) throw new FakeFsError("EACCES", path);
    if (dir.entries.size > 0 && !(dir.mode & X)) throw new FakeFsError("EACCES", path);
    return [...dir.entries]
      .map(([name, node]) => this.#describe(joinPath(path, name), node))
      .sort((a, b) => byCodePoint(a.name, b.name));
  }

  makeDirectory(path: string, createParents: boolean): void {
    if (createParents) this.makeParents(path);
    else this.mkdir(path);
  }

  /** Removes a file, a symlink, an empty directory or (recursive) a whole tree. */
  remove(path: string, recursive: boolean): void {
    const node = this.#existing(path, false);
    if (node.type !== "directory") this.unlink(path);
    else if (recursive) this.#removeTree(path);
    else this.rmdir(path);
  }

  /**
   * The file's bytes from `offset` as they are now: a view that later changes leave alone
   * (appends write past it, truncation starts a new buffer). Copy before handing it out.
   */
  read(path: string, offset: number): Uint8Array {
    const file = this.#openRead(path);
    return file.type === "file" ? file.bytes().subarray(offset) : new Uint8Array(0);
  }

  /** Starts an upload to `path`: parents created, a temporary file beside it (hidden from watches). */
  upload(path: string): FakeUpload {
    let existing: Node | undefined;
    try {
      existing = this.#resolve(path, true).node;
    } catch (error) {
      if (!(error instanceof FakeFsError && error.code === "ENOENT")) throw error;
    }
    if (existing?.type === "directory") {
      throw new FakeFsError("EISDIR", path, { message: `${path}: is a directory` });
    }
    const parent = dirname(path) || "/";
    try {
      this.makeParents(parent);
    } catch (error) {
      // The agent reports a parent that exists as a file as "not a directory".
      if (error instanceof FakeFsError && error.kind === "already_exists") {
        throw new FakeFsError("ENOTDIR", path, { message: error.message });
      }
      throw namingReadOnly(error, path);
    }
    const temp = joinPath(parent, `.${basename(path)}${UPLOAD_MARK}${++this.#uploads}`);
    let file: FileNode;
    try {
      file = this.#create(temp, { exclusive: true });
    } catch (error) {
      throw namingReadOnly(error, path);
    }
    return {
      write: (data) => {
        this.#claimSpace(temp, data.byteLength);
        file.append(data);
      },
      commit: () => {
        try {
          file.mode = this.#existing(path, true).mode; // keep an existing file's mode
          this.#emit([this.#entryEvent(temp, "modify")]);
        } catch (error) {
          if (!(error instanceof FakeFsError && error.code === "ENOENT")) throw error;
        }
        this.rename(temp, path);
      },
      abort: () => {
        try {
          if (this.#resolve(temp, false).node === file) this.unlink(temp);
        } catch {} // gone already
      },
    };
  }

  /** Watches a file or a directory (a symlink is followed). */
  watch(path: string, recursive: boolean): FakeWatch {
    const { dir, name, node } = this.#resolve(path, true);
    if (!node) throw new FakeFsError("ENOENT", path);
    const watchDir = node.type === "directory" ? node : dir;
    const only = node.type === "directory" ? undefined : name;
    const root = this.#pathOf(watchDir) ?? "/";
    if (!(watchDir.mode & R)) throw new FakeFsError("EACCES", path);
    const watch = new FakeWatch(this, root, only, recursive);
    watch.add(root, watchDir);
    if (recursive && only === undefined) watch.addTree(root, watchDir, []);
    this.#watches.add(watch);
    return watch;
  }

  /** @internal */
  unwatch(watch: FakeWatch): void {
    this.#watches.delete(watch);
  }

  // --- system calls, for the agent's calls and the mini shell --------------------------------

  /** mkdir(2): the parent must exist, the path must not. */
  mkdir(path: string): void {
    const { dir, name, node } = this.#resolve(path, false);
    if (name === undefined || node) throw new FakeFsError("EEXIST", path);
    this.#writable(dir, path);
    this.#attach(dir, name, new DirNode(DIR_MODE));
  }

  /** Python's os.makedirs(path, exist_ok=True), as the agent's make_parents reports it. */
  makeParents(path: string): void {
    const makedirs = (name: string) => {
      let [head, tail] = pySplit(name);
      if (!tail) [head, tail] = pySplit(head);
      if (head && tail && !this.#exists(head)) {
        try {
          makedirs(head);
        } catch (error) {
          if (!(error instanceof FakeFsError && error.code === "EEXIST")) throw error;
        }
      }
      try {
        this.mkdir(name);
      } catch (error) {
        if (!(error instanceof FakeFsError && error.code === "EEXIST" && this.#isDirectory(name))) throw error;
      }
    };
    try {
      makedirs(path);
    } catch (error) {
      if (error instanceof FakeFsError && error.code === "EEXIST") {
        throw new FakeFsError("EEXIST", path, { message: `${path}: exists and is not a directory` });
      }
      throw namingReadOnly(error, path);
    }
  }

  /** unlink(2): a file, symlink or device; never a directory. */
  unlink(path: string): void {
    const { dir, name, node } = this.#resolve(path, false);
    if (name === undefined) throw new FakeFsError("EISDIR", path);
    if (!node) throw new FakeFsError("ENOENT", path);
    this.#writable(dir, path);
    if (node.type === "directory") throw new FakeFsError("EISDIR", path);
    this.#detach(dir, name, node);
  }

  /** rmdir(2): an empty directory. */
  rmdir(path: string): void {
    const { dir, name, node } = this.#resolve(path, false);
    if (name === undefined) throw new FakeFsError(node === this.root ? "EBUSY" : "EINVAL", path);
    if (!node) throw new FakeFsError("ENOENT", path);
    if (node.type !== "directory") throw new FakeFsError("ENOTDIR", path);
    this.#writable(dir, path);
    if (node.readOnlyMount) throw new FakeFsError("EBUSY", path); // a mount point
    if (node.entries.size > 0) throw new FakeFsError("ENOTEMPTY", path);
    this.#detach(dir, name, node);
  }

  /** rename(2): replaces a file or an empty directory at `to`; symlinks are moved, not followed. */
  rename(from: string, to: string): void {
    const source = this.#resolve(from, false);
    if (!source.node) throw new FakeFsError("ENOENT", from);
    const target = this.#resolve(to, false);
    if (source.name === undefined || target.name === undefined) throw new FakeFsError("EBUSY", from);
    this.#writable(source.dir, from);
    this.#writable(target.dir, to);
    if (source.node.type === "directory" && source.node.readOnlyMount) throw new FakeFsError("EBUSY", from);
    const node = source.node;
    const replaced = target.node;
    if (replaced === node) return;
    if (node.type === "directory") {
      if (replaced && replaced.type !== "directory") throw new FakeFsError("ENOTDIR", to);
      if (replaced?.type === "directory" && replaced.entries.size > 0) throw new FakeFsError("ENOTEMPTY", to);
      for (let d: DirNode | undefined = target.dir; d; d = d.parent) {
        if (d === node) throw new FakeFsError("EINVAL", from); // into itself
      }
    } else {
      if (replaced?.type === "directory") throw new FakeFsError("EISDIR", to);
      if (to.endsWith("/") || from.endsWith("/")) throw new FakeFsError("ENOTDIR", to);
    }
    const cookie = ++this.#cookie;
    source.dir.entries.delete(source.name);
    source.dir.mtimeMs = now();
    if (replaced?.type === "directory") replaced.parent = undefined;
    target.dir.entries.set(target.name, node);
    target.dir.mtimeMs = now();
    if (node.type === "directory") {
      node.parent = target.dir;
      node.name = target.name;
    }
    const events: RawEvent[] = [];
    if (replaced?.type === "directory") events.push(selfEvent(replaced, "delete_self"));
    events.push({ dir: source.dir, name: source.name, kind: "moved_from", cookie });
    events.push({ dir: target.dir, name: target.name, kind: "moved_to", cookie, node });
    if (node.type === "directory") events.push(selfEvent(node, "move_self"));
    this.#emit(events);
  }

  /** symlink(2): creates `path` pointing at `target` (which need not exist). */
  symlink(target: string, path: string): void {
    if (target === "") throw new FakeFsError("ENOENT", path);
    const { dir, name, node } = this.#resolve(path, false);
    if (name === undefined || node) throw new FakeFsError("EEXIST", path);
    this.#writable(dir, path);
    this.#attach(dir, name, new LinkNode(target));
  }

  /** chmod(2) (following symlinks). */
  chmod(path: string, mode: number): void {
    const resolved = this.#resolve(path, true);
    const node = resolved.node;
    if (!node) throw new FakeFsError("ENOENT", path);
    if (this.#onReadOnlyMount(resolved)) throw new FakeFsError("EROFS", path);
    node.mode = mode & 0o7777;
    this.#emit([this.#entryEvent(path, "modify", true)]);
  }

  /** touch: creates an empty file, or sets the mtime of what is there (following symlinks). */
  touch(path: string): void {
    const resolved = this.#resolve(path, true);
    const { node } = resolved;
    if (node && this.#onReadOnlyMount(resolved)) throw new FakeFsError("EROFS", path);
    const target = node ?? this.#create(path, { exclusive: false });
    target.mtimeMs = now();
    this.#emit([this.#entryEvent(path, "modify", true)]);
  }

  /** open(2) for writing (`>` truncates, `>>` appends), creating the file if needed. */
  openWrite(path: string, append: boolean): FakeFileWriter {
    const resolved = this.#resolve(path, true);
    const { node } = resolved;
    if (node?.type === "other") return { write: () => {} };
    let file: FileNode;
    if (node) {
      if (node.type === "directory") throw new FakeFsError("EISDIR", path);
      if (node.type !== "file") throw new FakeFsError("EINVAL", path);
      if (!(node.mode & W)) throw new FakeFsError("EACCES", path);
      if (this.#onReadOnlyMount(resolved)) throw new FakeFsError("EROFS", path);
      file = node;
      if (!append) {
        file.truncate();
        this.#emit([this.#entryEvent(path, "modify", true)]);
      }
    } else {
      file = this.#create(path, { exclusive: false });
    }
    // Where the file was opened: writes are reported there while it is still in place.
    const at = this.#resolve(path, true);
    return {
      write: (data) => {
        if (data.byteLength === 0) return;
        this.#claimSpace(path, data.byteLength);
        file.append(data);
        if (at.name !== undefined && at.dir.entries.get(at.name) === file) {
          this.#emit([{ dir: at.dir, name: at.name, kind: "modify", cookie: 0 }]);
        }
      },
    };
  }

  /** open(2) for reading: the file (or device), following symlinks. */
  #openRead(path: string): FileNode | NullDevice {
    const node = this.#existing(path, true);
    if (node.type === "directory") {
      if (!(node.mode & R)) throw new FakeFsError("EACCES", path);
      throw new FakeFsError("EISDIR", path, { message: `${path}: is a directory` });
    }
    if (!(node.mode & R)) throw new FakeFsError("EACCES", path);
    return node as FileNode | NullDevice;
  }

  /** A file's whole contents, for processes (cat). */
  readAll(path: string): Uint8Array {
    const file = this.#openRead(path);
    return file.type === "file" ? file.bytes().slice() : new Uint8Array(0);
  }

  /** Whether `path` is a directory, following symlinks (false when it cannot be resolved). */
  isDirectory(path: string): boolean {
    return this.#isDirectory(path);
  }

  // --- internals ---------------------------------------------------------------------------

  /**
   * Walks `path` from the root like the kernel: "." and ".." (which stops at the root),
   * symlinks in the middle always followed, the last one when `followLast` (or when the path
   * ends with "/"), searching a directory needs its x bit.
   */
  #resolve(path: string, followLast: boolean): Resolved {
    const parts = path.split("/").filter((p) => p !== "");
    const trailingSlash = path.endsWith("/") && parts.length > 0;
    const pending = parts.reverse();
    let dir = this.root;
    let links = 0;
    const itself = (d: DirNode): Resolved => ({ dir: d.parent ?? d, name: undefined, node: d });
    while (pending.length > 0) {
      const part = pending.pop() as string;
      const last = pending.length === 0;
      if (part === "." || part === "..") {
        if (part === "..") dir = dir.parent ?? dir;
        if (last) return itself(dir);
        continue;
      }
      if (!(dir.mode & X)) throw new FakeFsError("EACCES", path);
      if (encoder.encode(part).byteLength > MAX_NAME_BYTES) throw new FakeFsError("ENAMETOOLONG", path);
      const node = dir.entries.get(part);
      if (node?.type === "symlink" && (!last || followLast || trailingSlash)) {
        if (++links > MAX_SYMLINKS) throw new FakeFsError("ELOOP", path);
        if (node.target.startsWith("/")) dir = this.root;
        pending.push(
          ...node.target
            .split("/")
            .filter((p) => p !== "")
            .reverse(),
        );
        if (pending.length === 0) return itself(dir);
        continue;
      }
      if (last) {
        if (trailingSlash && node && node.type !== "directory") throw new FakeFsError("ENOTDIR", path);
        return { dir, name: part, node };
      }
      if (!node) throw new FakeFsError("ENOENT", path);
      if (node.type !== "directory") throw new FakeFsError("ENOTDIR", path);
      dir = node;
    }
    return itself(dir);
  }

  #existing(path: string, follow: boolean): Node {
    const { node } = this.#resolve(path, follow);
    if (!node) throw new FakeFsError("ENOENT", path);
    return node;
  }

  #exists(path: string): boolean {
    try {
      return this.#resolve(path, true).node !== undefined;
    } catch {
      return false;
    }
  }

  #isDirectory(path: string): boolean {
    try {
      return this.#resolve(path, true).node?.type === "directory";
    } catch {
      return false;
    }
  }

  #dirAt(path: string): DirNode {
    const node = this.#existing(path, true);
    if (node.type !== "directory") throw new FakeFsError("ENOTDIR", path);
    return node;
  }

  /** Creating or removing entries needs a writable mount, then write and search permission on the directory. */
  #writable(dir: DirNode, path: string): void {
    if (this.#readOnly(dir)) throw new FakeFsError("EROFS", path);
    if ((dir.mode & (W | X)) !== (W | X)) throw new FakeFsError("EACCES", path);
  }

  /** Fails with ENOSPC when `bytes` more would take the files past the capacity (a whole write fails). */
  #claimSpace(path: string, bytes: number): void {
    if (this.#capacityBytes === undefined) return;
    let used = 0;
    const visit = (dir: DirNode): void => {
      for (const node of dir.entries.values()) {
        if (node.type === "file") used += node.size;
        else if (node.type === "directory") visit(node);
      }
    };
    visit(this.root);
    if (used + bytes > this.#capacityBytes) throw new FakeFsError("ENOSPC", path);
  }

  /** Whether `dir` is on a read-only mount (is one, or is below one). */
  #readOnly(dir: DirNode): boolean {
    for (let d: DirNode | undefined = dir; d; d = d.parent) if (d.readOnlyMount) return true;
    return false;
  }

  /** Whether what a path resolved to is on a read-only mount. */
  #onReadOnlyMount({ dir, node }: Resolved): boolean {
    return this.#readOnly(node?.type === "directory" ? node : dir);
  }

  /** open(O_CREAT) of a file that is not there (with `exclusive`, a symlink is not followed). */
  #create(path: string, options: { exclusive: boolean }): FileNode {
    const { dir, name, node } = this.#resolve(path, !options.exclusive);
    if (node || name === undefined) throw new FakeFsError(node?.type === "directory" ? "EISDIR" : "EEXIST", path);
    if (path.endsWith("/")) throw new FakeFsError("EISDIR", path);
    this.#writable(dir, path);
    const file = new FileNode(FILE_MODE);
    this.#attach(dir, name, file);
    return file;
  }

  #attach(dir: DirNode, name: string, node: Node): void {
    dir.entries.set(name, node);
    dir.mtimeMs = now();
    if (node.type === "directory") {
      node.parent = dir;
      node.name = name;
    }
    this.#emit([{ dir, name, kind: "create", cookie: 0, node }]);
  }

  #detach(dir: DirNode, name: string, node: Node): void {
    dir.entries.delete(name);
    dir.mtimeMs = now();
    const events: RawEvent[] = [];
    if (node.type === "directory") {
      node.parent = undefined;
      events.push(selfEvent(node, "delete_self"));
    }
    events.push({ dir, name, kind: "delete", cookie: 0 });
    this.#emit(events);
  }

  /** shutil.rmtree: depth first, stopping at the first failure. */
  #removeTree(path: string): void {
    const dir = this.#existing(path, false) as DirNode;
    if (!(dir.mode & R)) throw new FakeFsError("EACCES", path);
    for (const [name, node] of [...dir.entries]) {
      const child = joinPath(path, name);
      if (node.type === "directory") this.#removeTree(child);
      else this.unlink(child);
    }
    this.rmdir(path);
  }

  /** The event for the entry `path` names (following a symlink at its end when `follow`). */
  #entryEvent(path: string, kind: "modify", follow = false): RawEvent {
    const { dir, name, node } = this.#resolve(path, follow);
    if (name === undefined && node?.type === "directory") return selfEvent(node, kind);
    return { dir, name: name ?? "", kind, cookie: 0 };
  }

  #describe(path: string, node: Node): RuntimeFileInfo {
    const size =
      node.type === "file"
        ? node.size
        : node.type === "directory"
          ? DIR_SIZE
          : node.type === "symlink"
            ? encoder.encode(node.target).byteLength
            : 0;
    return {
      name: basename(path) || "/",
      path,
      type: node.type,
      size,
      mode: node.mode,
      mtimeMs: Math.trunc(node.mtimeMs),
      ...(node.type === "symlink" ? { symlinkTarget: node.target } : {}),
    };
  }

  /** A directory's absolute path, or undefined once it is no longer in the tree. */
  #pathOf(dir: DirNode): string | undefined {
    const names: string[] = [];
    let d = dir;
    while (d !== this.root) {
      if (!d.parent) return undefined;
      names.push(d.name);
      d = d.parent;
    }
    return `/${names.reverse().join("/")}`;
  }

  #emit(events: RawEvent[]): void {
    for (const watch of this.#watches) watch.take(events);
  }

  /** @internal What a watch needs to follow symlinks to directories while adding a tree. */
  resolveDirectory(path: string): DirNode | undefined {
    try {
      const { node } = this.#resolve(path, true);
      return node?.type === "directory" ? node : undefined;
    } catch {
      return undefined;
    }
  }
}

/** A read-only failure reported for the path asked about (as the agent reports it), not a part of it. */
function namingReadOnly(error: unknown, path: string): unknown {
  return error instanceof FakeFsError && error.code === "EROFS" ? new FakeFsError("EROFS", path) : error;
}

const selfEvent = (dir: DirNode, kind: RawEvent["kind"]): RawEvent => ({ dir, name: "", kind, cookie: 0 });

/**
 * One watch, like the agent's inotify instance: a directory (with `recursive`, every
 * directory below it, new ones included) or one file (watched through its directory, so a
 * file replaced by a rename stays watched). Watched directories are remembered with the path
 * they had when added, as inotify's watch descriptors are.
 */
export class FakeWatch {
  readonly #dirs = new Map<DirNode, string>();
  readonly #queue = new WatchQueue<RuntimeWatchEvent>({ type: "overflow", paths: [] });

  constructor(
    private readonly fs: FakeFilesystem,
    readonly root: string,
    readonly only: string | undefined,
    readonly recursive: boolean,
  ) {}

  /** @internal Watches one directory (inotify_add_watch needs read permission). */
  add(path: string, dir: DirNode): boolean {
    if (!(dir.mode & R)) return false;
    this.#dirs.set(dir, path);
    return true;
  }

  /** @internal Watches every directory below `dir` (os.walk, top down); names found go to `created`. */
  addTree(path: string, dir: DirNode, created: string[]): void {
    if (!(dir.mode & R)) return; // os.walk skips what it cannot list
    const subdirs: [string, DirNode, boolean][] = [];
    const files: string[] = [];
    for (const [name, node] of dir.entries) {
      const child = joinPath(path, name);
      const target =
        node.type === "directory" ? node : node.type === "symlink" ? this.fs.resolveDirectory(child) : undefined;
      if (target) subdirs.push([child, target, node.type === "directory"]);
      else files.push(child);
    }
    for (const [child, target] of subdirs) {
      created.push(child);
      this.add(child, target);
    }
    created.push(...files);
    for (const [child, target, real] of subdirs) if (real) this.addTree(child, target, created);
  }

  /** @internal Decodes one batch of changes, as the agent decodes one inotify read. */
  take(batch: readonly RawEvent[]): void {
    if (this.#queue.ended) return;
    const out: RuntimeWatchEvent[] = [];
    const moves = new Map<number, number | null>();
    for (const event of batch) {
      const parent = this.#dirs.get(event.dir);
      if (parent === undefined) continue;
      if (event.name === "") {
        // The watched directory itself.
        if (event.kind === "delete_self" || event.kind === "move_self") {
          if (parent === this.root && this.only === undefined) {
            out.push({ type: event.kind === "delete_self" ? "delete" : "rename", paths: [parent] });
          }
          if (event.kind === "delete_self") this.#dirs.delete(event.dir);
        }
        continue;
      }
      const name = event.name;
      const target = uploadTarget(name);
      if (this.only !== undefined && name !== this.only && target !== this.only) continue;
      const path = joinPath(parent, name);
      if (target !== undefined) {
        // An SDK upload: its temporary file is not news; its rename into place is a create.
        if (event.kind === "moved_from") moves.set(event.cookie, null);
        continue;
      }
      switch (event.kind) {
        case "create":
          out.push({ type: "create", paths: [path] });
          break;
        case "modify": {
          const previous = out.length > 0 ? out[out.length - 1] : this.#queue.lastPending();
          if (!(previous?.type === "modify" && previous.paths.length === 1 && previous.paths[0] === path)) {
            out.push({ type: "modify", paths: [path] });
          }
          break;
        }
        case "delete":
          out.push({ type: "delete", paths: [path] });
          break;
        case "moved_from":
          moves.set(event.cookie, out.length);
          out.push({ type: "rename", paths: [path] });
          break;
        case "moved_to": {
          const index = moves.has(event.cookie) ? moves.get(event.cookie) : -1;
          moves.delete(event.cookie);
          if (index === null) out.push({ type: "create", paths: [path] });
          else if (index !== undefined && index >= 0) (out[index] as RuntimeWatchEvent).paths.push(path);
          else out.push({ type: "rename", paths: [path] });
          break;
        }
      }
      if (
        this.recursive &&
        event.node?.type === "directory" &&
        (event.kind === "create" || event.kind === "moved_to")
      ) {
        const created: string[] = [];
        if (this.add(path, event.node)) this.addTree(path, event.node, created);
        for (const p of created) out.push({ type: "create", paths: [p] });
      }
    }
    this.#queue.push(out);
  }

  /** No more events (the sandbox stopped, or the watch was closed). */
  end(): void {
    this.#queue.end();
    this.fs.unwatch(this);
  }

  /** Batches of events as they come, until the watch ends or `signal` aborts. */
  batches(signal: AbortSignal): AsyncGenerator<RuntimeWatchEvent[]> {
    return this.#queue.drain(signal, () => this.end());
  }
}
