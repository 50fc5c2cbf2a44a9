/** Path resolution in the in-memory tree, like the kernel's: from a path to a node and back. */
import { FakeFsError } from "./fs-errors.js";
import { type DirNode, type Node, SEARCH } from "./fs-nodes.js";

const MAX_SYMLINKS = 40;
const MAX_NAME_BYTES = 255;

const encoder = new TextEncoder();

/** Where a path leads: the directory holding its last component, that name, and what is there. */
export interface Resolved {
  readonly dir: DirNode;
  /** Undefined when the path ends at "/", "." or "..": `node` is that directory itself. */
  readonly name: string | undefined;
  readonly node: Node | undefined;
}

/**
 * Walks `path` from `root` like the kernel: "." and ".." (which stops at the root),
 * symlinks in the middle always followed, the last one when `followLast` (or when the path
 * ends with "/"), at most 40 symlinks a path; searching a directory needs its x bit.
 */
export function resolve(root: DirNode, path: string, followLast: boolean): Resolved {
  const parts = path.split("/").filter((p) => p !== "");
  const trailingSlash = path.endsWith("/") && parts.length > 0;
  const pending = parts.reverse();
  let dir = root;
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
    if (!(dir.mode & SEARCH)) throw new FakeFsError("EACCES", path);
    if (encoder.encode(part).byteLength > MAX_NAME_BYTES) throw new FakeFsError("ENAMETOOLONG", path);
    const node = dir.entries.get(part);
    if (node?.type === "symlink" && (!last || followLast || trailingSlash)) {
      if (++links > MAX_SYMLINKS) throw new FakeFsError("ELOOP", path);
      if (node.target.startsWith("/")) dir = root;
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

/** A directory's absolute path below `root`, or undefined once it is no longer in the tree. */
export function pathOf(root: DirNode, dir: DirNode): string | undefined {
  const names: string[] = [];
  let d = dir;
  while (d !== root) {
    if (!d.parent) return undefined;
    names.push(d.name);
    d = d.parent;
  }
  return `/${names.reverse().join("/")}`;
}
