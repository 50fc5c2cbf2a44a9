/**
 * A fake sandbox's files as the runtime driver seam wants them (`RuntimeFilesystem`): the
 * agent's file calls over the in-memory tree, following the agent's steps one by one so edge
 * cases match too, made asynchronous, reads in chunks as the agent sends.
 */
import type { RuntimeFileInfo, RuntimeFilesystem, RuntimeUpload } from "@sbx/server-kit";
import type { FakeTree } from "./fake-tree.js";
import { FakeWatch } from "./fake-watch.js";
import { FakeFsError, isErrno, namingReadOnly } from "./fs-errors.js";
import { type DirNode, describeNode, type FileNode, type Node, READ, SEARCH } from "./fs-nodes.js";
import { byCodePoint, dirname, joinPath, uploadTempPath } from "./fs-paths.js";

/** Bytes per chunk of a read. */
const READ_CHUNK_BYTES = 256 * 1024;

export function fakeRuntimeFiles(tree: FakeTree): RuntimeFilesystem {
  let uploads = 0;
  return {
    stat: async (path) => tree.stat(path),
    list: async (path) => listDirectory(tree, path),
    async makeDirectory(path, createParents) {
      if (createParents) tree.makeParents(path);
      else tree.mkdir(path);
    },
    remove: async (path, recursive) => removePath(tree, path, recursive),
    async read(path, offset) {
      // The file's bytes as they are now: a view that later changes leave alone (appends
      // write past it, truncation starts a new buffer). Opening fails now, before the first chunk.
      const file = tree.openRead(path);
      const bytes = file.type === "file" ? file.bytes().subarray(offset) : new Uint8Array(0);
      return (async function* () {
        for (let at = 0; at < bytes.byteLength; at += READ_CHUNK_BYTES) {
          yield bytes.slice(at, at + READ_CHUNK_BYTES); // the reader may keep or change it
        }
      })();
    },
    upload: async (path) => startUpload(tree, path, () => ++uploads),
    watch: async (path, recursive, signal) => FakeWatch.start(tree, path, recursive).batches(signal),
  };
}

/** The entries of a directory (following a symlink to it), symlinks described, sorted by name. */
export function listDirectory(tree: FakeTree, path: string): RuntimeFileInfo[] {
  const dir = tree.existing(path, true);
  if (dir.type !== "directory") {
    throw new FakeFsError("ENOTDIR", path, { message: `${path}: not a directory` });
  }
  if (!(dir.mode & READ)) throw new FakeFsError("EACCES", path);
  if (dir.entries.size > 0 && !(dir.mode & SEARCH)) throw new FakeFsError("EACCES", path);
  return [...dir.entries]
    .map(([name, node]) => describeNode(joinPath(path, name), node))
    .sort((a, b) => byCodePoint(a.name, b.name));
}

/** Removes a file, a symlink, an empty directory or (recursive) a whole tree. */
export function removePath(tree: FakeTree, path: string, recursive: boolean): void {
  const node = tree.existing(path, false);
  if (node.type !== "directory") tree.unlink(path);
  else if (recursive) removeTree(tree, path);
  else tree.rmdir(path);
}

/** shutil.rmtree: depth first, stopping at the first failure. */
function removeTree(tree: FakeTree, path: string): void {
  const dir = tree.existing(path, false) as DirNode;
  if (!(dir.mode & READ)) throw new FakeFsError("EACCES", path);
  for (const [name, node] of [...dir.entries]) {
    const child = joinPath(path, name);
    if (node.type === "directory") removeTree(tree, child);
    else tree.unlink(child);
  }
  tree.rmdir(path);
}

/**
 * Starts an upload to `path`: parents created, the bytes written to a temporary file beside it
 * (numbered by `nextId`; watches do not report it), then moved onto the path in one rename.
 */
function startUpload(tree: FakeTree, path: string, nextId: () => number): RuntimeUpload {
  let existing: Node | undefined;
  try {
    existing = tree.resolve(path, true).node;
  } catch (error) {
    if (!isErrno(error, "ENOENT")) throw error;
  }
  if (existing?.type === "directory") {
    throw new FakeFsError("EISDIR", path, { message: `${path}: is a directory` });
  }
  try {
    tree.makeParents(dirname(path) || "/");
  } catch (error) {
    // The agent reports a parent that exists as a file as "not a directory".
    if (error instanceof FakeFsError && error.kind === "already_exists") {
      throw new FakeFsError("ENOTDIR", path, { message: error.message });
    }
    throw namingReadOnly(error, path);
  }
  const temp = uploadTempPath(path, nextId());
  let file: FileNode;
  try {
    file = tree.create(temp, { exclusive: true });
  } catch (error) {
    throw namingReadOnly(error, path);
  }
  return {
    write: async (data) => {
      tree.claimSpace(temp, data.byteLength);
      file.append(data);
    },
    commit: async () => {
      try {
        file.mode = tree.existing(path, true).mode; // keep an existing file's mode
        tree.events.emit([tree.entryEvent(temp, "modify")]);
      } catch (error) {
        if (!isErrno(error, "ENOENT")) throw error;
      }
      tree.rename(temp, path);
    },
    abort: async () => {
      try {
        if (tree.resolve(temp, false).node === file) tree.unlink(temp);
      } catch {} // gone already
    },
  };
}
