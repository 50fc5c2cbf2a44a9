/** The in-memory tree's nodes: files (bytes, mode, mtime), directories, symlinks and /dev/null. */
import type { RuntimeFileInfo } from "@sbx/server-kit";
import { basename } from "./fs-paths.js";

/** Linux's default umask applied: new files 0o644, new directories 0o755. */
export const FILE_MODE = 0o644;
export const DIR_MODE = 0o755;
/** Directories report the size ext4 gives an empty one. */
const DIR_SIZE = 4096;

/** The owner's permission bits: the sandbox user owns everything and has no capabilities. */
export const READ = 0o400;
export const WRITE = 0o200;
export const SEARCH = 0o100;

const encoder = new TextEncoder();
const now = () => Date.now();

abstract class BaseNode {
  abstract readonly type: RuntimeFileInfo["type"];
  mtimeMs = now();
  constructor(public mode: number) {}

  /** Marks it changed now. */
  touch(): void {
    this.mtimeMs = now();
  }
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
    this.touch();
  }

  truncate(): void {
    this.#buffer = new Uint8Array(0); // earlier views keep their bytes
    this.#size = 0;
    this.touch();
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

  /** Whether it is on a read-only mount (is one, or is below one). */
  get readOnly(): boolean {
    for (let d: DirNode | undefined = this; d; d = d.parent) if (d.readOnlyMount) return true;
    return false;
  }
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

/** What stat reports for `node`, found at `path` (a symlink described, not followed). */
export function describeNode(path: string, node: Node): RuntimeFileInfo {
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
