/** A fake sandbox's files in memory: the tree, its system calls, and the changes it publishes. */
import type { RuntimeFileInfo } from "@sbx/server-kit";
import type { FakeImageFiles } from "./fake-archive.js";
import { FakeFsError, isErrno, namingReadOnly } from "./fs-errors.js";
import {
  DIR_MODE,
  DirNode,
  describeNode,
  FILE_MODE,
  FileNode,
  LinkNode,
  type Node,
  NullDevice,
  READ,
  SEARCH,
  WRITE,
} from "./fs-nodes.js";
import { dirname, pySplit } from "./fs-paths.js";
import { pathOf, type Resolved, resolve } from "./fs-resolve.js";
import { selfEvent, type TreeEvent, TreeEvents } from "./tree-events.js";

/** A file opened for writing by a process (`>` / `>>`). */
export interface FakeFileWriter {
  write(data: Uint8Array): void;
}

export interface FakeTreeOptions {
  /** Bytes the files may hold in all (the sandbox's `diskMiB`); writes past it fail with ENOSPC. */
  readonly capacityBytes?: number | undefined;
  /**
   * The files of the image the sandbox starts from. Without one, the tree is the default
   * image's: /usr is a read-only mount (the server binds the host's); an image's root is the
   * sandbox's own, all of it writable, and its files do not count against `capacityBytes`.
   */
  readonly image?: FakeImageFiles | undefined;
}

/**
 * One sandbox's tree, as its processes see it: paths resolve like Linux inside it, the sandbox
 * user owns everything and has no capabilities (so the owner permission bits apply), /usr is a
 * read-only mount (as the server binds the image's /usr), and failures are FakeFsErrors with
 * the errno the real system call gives. Every change is published as inotify-like events.
 */
export class FakeTree {
  readonly root = new DirNode(DIR_MODE);
  /** Every change, published for watches. */
  readonly events = new TreeEvents();
  readonly #capacityBytes: number | undefined;
  #cookie = 0;

  constructor(options: FakeTreeOptions = {}) {
    let imageBytes = 0;
    for (const file of options.image?.values() ?? []) if (file.type === "file") imageBytes += file.data.byteLength;
    this.#capacityBytes = options.capacityBytes === undefined ? undefined : options.capacityBytes + imageBytes;
    for (const dir of ["/dev", "/etc", "/home", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var/tmp", "/work"]) {
      this.makeParents(dir);
    }
    for (const dir of ["/usr/bin", "/usr/lib", "/usr/local", "/usr/share"]) this.makeParents(dir);
    if (options.image) this.#placeImage(options.image);
    else this.#dirAt("/usr").readOnlyMount = true;
    this.#attach(this.#dirAt("/dev"), "null", new NullDevice(0o666));
    const hostname = new FileNode(FILE_MODE);
    hostname.append(new TextEncoder().encode("sandbox\n"));
    this.#attach(this.#dirAt("/etc"), "hostname", hostname);
  }

  /** Puts an image's files in place (parents first: a path sorts after its directory). */
  #placeImage(files: FakeImageFiles): void {
    for (const path of [...files.keys()].sort()) {
      const file = files.get(path);
      if (!file) continue;
      const parent = dirname(path) || "/";
      if (parent !== "/") this.makeParents(parent);
      const { dir, name, node } = this.resolve(path, false);
      if (name === undefined) continue;
      if (file.type === "directory") {
        if (node?.type === "directory") node.mode = file.mode;
        else this.#attach(dir, name, new DirNode(file.mode));
        continue;
      }
      if (node) dir.entries.delete(name);
      if (file.type === "symlink") this.#attach(dir, name, new LinkNode(file.target));
      else {
        const created = new FileNode(file.mode);
        created.append(file.data);
        this.#attach(dir, name, created);
      }
    }
  }

  // --- system calls --------------------------------------------------------------------------

  /** lstat(2): describes `path`; a symlink is described, not followed. */
  stat(path: string): RuntimeFileInfo {
    return describeNode(path, this.existing(path, false));
  }

  /** stat(2): describes what `path` leads to (following symlinks). */
  statFollowing(path: string): RuntimeFileInfo {
    return describeNode(path, this.existing(path, true));
  }

  /** Whether `path` is a directory, following symlinks (false when it cannot be resolved). */
  isDirectory(path: string): boolean {
    return this.resolveDirectory(path) !== undefined;
  }

  /** mkdir(2): the parent must exist, the path must not. */
  mkdir(path: string): void {
    const { dir, name, node } = this.resolve(path, false);
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
          if (!isErrno(error, "EEXIST")) throw error;
        }
      }
      try {
        this.mkdir(name);
      } catch (error) {
        if (!(isErrno(error, "EEXIST") && this.isDirectory(name))) throw error;
      }
    };
    try {
      makedirs(path);
    } catch (error) {
      if (isErrno(error, "EEXIST")) {
        throw new FakeFsError("EEXIST", path, { message: `${path}: exists and is not a directory` });
      }
      throw namingReadOnly(error, path);
    }
  }

  /** unlink(2): a file, symlink or device; never a directory. */
  unlink(path: string): void {
    const { dir, name, node } = this.resolve(path, false);
    if (name === undefined) throw new FakeFsError("EISDIR", path);
    if (!node) throw new FakeFsError("ENOENT", path);
    this.#writable(dir, path);
    if (node.type === "directory") throw new FakeFsError("EISDIR", path);
    this.#detach(dir, name, node);
  }

  /** rmdir(2): an empty directory. */
  rmdir(path: string): void {
    const { dir, name, node } = this.resolve(path, false);
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
    const source = this.resolve(from, false);
    if (!source.node) throw new FakeFsError("ENOENT", from);
    const target = this.resolve(to, false);
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
    source.dir.touch();
    if (replaced?.type === "directory") replaced.parent = undefined;
    target.dir.entries.set(target.name, node);
    target.dir.touch();
    if (node.type === "directory") {
      node.parent = target.dir;
      node.name = target.name;
    }
    const batch: TreeEvent[] = [];
    if (replaced?.type === "directory") batch.push(selfEvent(replaced, "delete_self"));
    batch.push({ dir: source.dir, name: source.name, kind: "moved_from", cookie });
    batch.push({ dir: target.dir, name: target.name, kind: "moved_to", cookie, node });
    if (node.type === "directory") batch.push(selfEvent(node, "move_self"));
    this.events.emit(batch);
  }

  /** symlink(2): creates `path` pointing at `target` (which need not exist). */
  symlink(target: string, path: string): void {
    if (target === "") throw new FakeFsError("ENOENT", path);
    const { dir, name, node } = this.resolve(path, false);
    if (name === undefined || node) throw new FakeFsError("EEXIST", path);
    this.#writable(dir, path);
    this.#attach(dir, name, new LinkNode(target));
  }

  /** chmod(2) (following symlinks). */
  chmod(path: string, mode: number): void {
    const resolved = this.resolve(path, true);
    const node = resolved.node;
    if (!node) throw new FakeFsError("ENOENT", path);
    if (onReadOnlyMount(resolved)) throw new FakeFsError("EROFS", path);
    node.mode = mode & 0o7777;
    this.events.emit([this.entryEvent(path, "modify", true)]);
  }

  /** touch: creates an empty file, or sets the mtime of what is there (following symlinks). */
  touch(path: string): void {
    const resolved = this.resolve(path, true);
    const { node } = resolved;
    if (node && onReadOnlyMount(resolved)) throw new FakeFsError("EROFS", path);
    const target = node ?? this.create(path, { exclusive: false });
    target.touch();
    this.events.emit([this.entryEvent(path, "modify", true)]);
  }

  /** open(O_CREAT) of a file that is not there (with `exclusive`, a symlink is not followed). */
  create(path: string, options: { exclusive: boolean }): FileNode {
    const { dir, name, node } = this.resolve(path, !options.exclusive);
    if (node || name === undefined) throw new FakeFsError(node?.type === "directory" ? "EISDIR" : "EEXIST", path);
    if (path.endsWith("/")) throw new FakeFsError("EISDIR", path);
    this.#writable(dir, path);
    const file = new FileNode(FILE_MODE);
    this.#attach(dir, name, file);
    return file;
  }

  /** open(2) for writing (`>` truncates, `>>` appends), creating the file if needed. */
  openWrite(path: string, append: boolean): FakeFileWriter {
    const resolved = this.resolve(path, true);
    const { node } = resolved;
    if (node?.type === "other") return { write: () => {} };
    let file: FileNode;
    if (node) {
      if (node.type === "directory") throw new FakeFsError("EISDIR", path);
      if (node.type !== "file") throw new FakeFsError("EINVAL", path);
      if (!(node.mode & WRITE)) throw new FakeFsError("EACCES", path);
      if (onReadOnlyMount(resolved)) throw new FakeFsError("EROFS", path);
      file = node;
      if (!append) {
        file.truncate();
        this.events.emit([this.entryEvent(path, "modify", true)]);
      }
    } else {
      file = this.create(path, { exclusive: false });
    }
    // Where the file was opened: writes are reported there while it is still in place.
    const at = this.resolve(path, true);
    return {
      write: (data) => {
        if (data.byteLength === 0) return;
        this.claimSpace(path, data.byteLength);
        file.append(data);
        if (at.name !== undefined && at.dir.entries.get(at.name) === file) {
          this.events.emit([{ dir: at.dir, name: at.name, kind: "modify", cookie: 0 }]);
        }
      },
    };
  }

  /** open(2) for reading: the file (or device), following symlinks. */
  openRead(path: string): FileNode | NullDevice {
    const node = this.existing(path, true);
    if (node.type === "directory") {
      if (!(node.mode & READ)) throw new FakeFsError("EACCES", path);
      throw new FakeFsError("EISDIR", path, { message: `${path}: is a directory` });
    }
    if (!(node.mode & READ)) throw new FakeFsError("EACCES", path);
    return node as FileNode | NullDevice;
  }

  /** A file's whole contents, for processes (cat). */
  readAll(path: string): Uint8Array {
    const file = this.openRead(path);
    return file.type === "file" ? file.bytes().slice() : new Uint8Array(0);
  }

  /** Fails with ENOSPC when `bytes` more would take the files past the capacity (a whole write fails). */
  claimSpace(path: string, bytes: number): void {
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

  // --- paths ---------------------------------------------------------------------------------

  /** Where `path` leads (see `resolve`), following a symlink at its end when `followLast`. */
  resolve(path: string, followLast: boolean): Resolved {
    return resolve(this.root, path, followLast);
  }

  /** What is at `path`; ENOENT when nothing is. */
  existing(path: string, follow: boolean): Node {
    const { node } = this.resolve(path, follow);
    if (!node) throw new FakeFsError("ENOENT", path);
    return node;
  }

  /** The directory `path` leads to (following symlinks), or undefined when it leads to none. */
  resolveDirectory(path: string): DirNode | undefined {
    try {
      const { node } = this.resolve(path, true);
      return node?.type === "directory" ? node : undefined;
    } catch {
      return undefined;
    }
  }

  /** A directory's absolute path, or undefined once it is no longer in the tree. */
  pathOf(dir: DirNode): string | undefined {
    return pathOf(this.root, dir);
  }

  #exists(path: string): boolean {
    try {
      return this.resolve(path, true).node !== undefined;
    } catch {
      return false;
    }
  }

  #dirAt(path: string): DirNode {
    const node = this.existing(path, true);
    if (node.type !== "directory") throw new FakeFsError("ENOTDIR", path);
    return node;
  }

  /** Creating or removing entries needs a writable mount, then write and search permission on the directory. */
  #writable(dir: DirNode, path: string): void {
    if (dir.readOnly) throw new FakeFsError("EROFS", path);
    if ((dir.mode & (WRITE | SEARCH)) !== (WRITE | SEARCH)) throw new FakeFsError("EACCES", path);
  }

  #attach(dir: DirNode, name: string, node: Node): void {
    dir.entries.set(name, node);
    dir.touch();
    if (node.type === "directory") {
      node.parent = dir;
      node.name = name;
    }
    this.events.emit([{ dir, name, kind: "create", cookie: 0, node }]);
  }

  #detach(dir: DirNode, name: string, node: Node): void {
    dir.entries.delete(name);
    dir.touch();
    const batch: TreeEvent[] = [];
    if (node.type === "directory") {
      node.parent = undefined;
      batch.push(selfEvent(node, "delete_self"));
    }
    batch.push({ dir, name, kind: "delete", cookie: 0 });
    this.events.emit(batch);
  }

  // --- changes -------------------------------------------------------------------------------

  /** Ends every watch (the sandbox stopped). */
  close(): void {
    this.events.close();
  }

  /** The event for the entry `path` names (following a symlink at its end when `follow`). */
  entryEvent(path: string, kind: "modify", follow = false): TreeEvent {
    const { dir, name, node } = this.resolve(path, follow);
    if (name === undefined && node?.type === "directory") return selfEvent(node, kind);
    return { dir, name: name ?? "", kind, cookie: 0 };
  }
}

/** Whether what a path resolved to is on a read-only mount. */
const onReadOnlyMount = ({ dir, node }: Resolved): boolean => (node?.type === "directory" ? node : dir).readOnly;
