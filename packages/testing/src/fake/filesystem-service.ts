/**
 * FilesystemService over each fake sandbox's in-memory tree (filesystem.ts), with the real
 * server's checks, errors (a FilesystemError detail via `filesystemError`) and upload rules:
 * a WriteFile chunk is applied once however often it is retried, chunks of one upload run in
 * arrival order, and the finishing chunk moves the file into place in one rename.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type FilesystemService, FileType, MAX_UPLOAD_CHUNK_BYTES, WatchEventType } from "@sbx/proto";
import { checkId, checkPath, filesystemError } from "@sbx/server-kit";
import {
  type FakeFileInfo,
  type FakeFilesystem,
  FakeFsError,
  type FakeUpload,
  type FakeWatchEventType,
} from "./filesystem.js";
import type { FakeSandbox } from "./model.js";
import type { FakeState } from "./state.js";

/** An upload with no chunk for this long is dropped (its temporary file removed). */
const UPLOAD_IDLE_MS = 10 * 60_000;
/** How long a finished upload's answer is kept, for a retried last chunk. */
const FINISHED_KEPT_MS = 10 * 60_000;
/** Bytes per ReadFile message. */
const READ_CHUNK_BYTES = 256 * 1024;

const FILE_TYPES = {
  file: FileType.FILE,
  directory: FileType.DIRECTORY,
  symlink: FileType.SYMLINK,
  other: FileType.OTHER,
} as const;

const WATCH_TYPES: Record<FakeWatchEventType, WatchEventType> = {
  create: WatchEventType.CREATE,
  modify: WatchEventType.MODIFY,
  delete: WatchEventType.DELETE,
  rename: WatchEventType.RENAME,
  overflow: WatchEventType.OVERFLOW,
};

const toWire = (info: FakeFileInfo) => ({
  name: info.name,
  path: info.path,
  type: FILE_TYPES[info.type],
  size: BigInt(info.size),
  mode: info.mode,
  mtimeMs: BigInt(info.mtimeMs),
  symlinkTarget: info.symlinkTarget ?? "",
});

/** Runs a file operation, turning its failure into a Connect error with a FilesystemError detail. */
function fsCall<A>(path: string, call: () => A): A {
  try {
    return call();
  } catch (error) {
    if (error instanceof FakeFsError) throw filesystemError(error.kind, path, error.message);
    throw error;
  }
}

interface Upload {
  readonly path: string;
  readonly file: FakeUpload;
  committed: number;
  queue: Promise<unknown>;
  idle: ReturnType<typeof setTimeout>;
}

export function filesystemService(state: FakeState): ServiceImpl<typeof FilesystemService> {
  const active = new Map<string, Upload>();
  const finished = new Map<string, number>();

  const filesOf = (sandboxId: string, path: string): { sandbox: FakeSandbox; fs: FakeFilesystem } => {
    const sandbox = state.sandbox(sandboxId);
    checkPath(path);
    if (!sandbox.running) throw new ConnectError(`sandbox ${sandboxId} has finished`, Code.FailedPrecondition);
    sandbox.touch();
    return { sandbox, fs: sandbox.fs };
  };

  const drop = (key: string, upload: Upload) => {
    clearTimeout(upload.idle);
    if (active.get(key) === upload) active.delete(key);
    upload.file.abort();
  };

  const write = (key: string, upload: Upload, uploadId: string, offset: number, data: Uint8Array, finish: boolean) => {
    const done = finished.get(key);
    if (done !== undefined) return { committedOffset: BigInt(done), finished: true };
    if (offset > upload.committed) {
      throw new ConnectError(
        `upload ${uploadId}: chunk at offset ${offset}, but only ${upload.committed} bytes are written`,
        Code.FailedPrecondition,
      );
    }
    clearTimeout(upload.idle);
    upload.idle = unref(setTimeout(() => drop(key, upload), UPLOAD_IDLE_MS));
    const fresh = data.subarray(Math.min(upload.committed - offset, data.byteLength));
    if (fresh.byteLength > 0) {
      fsCall(upload.path, () => upload.file.write(fresh));
      upload.committed += fresh.byteLength;
    }
    // A finishing chunk that ends short of what is written is a stale retry: not the end.
    if (!finish || offset + data.byteLength < upload.committed) {
      return { committedOffset: BigInt(upload.committed), finished: false };
    }
    clearTimeout(upload.idle);
    active.delete(key);
    fsCall(upload.path, () => upload.file.commit());
    finished.set(key, upload.committed);
    unref(setTimeout(() => finished.delete(key), FINISHED_KEPT_MS));
    return { committedOffset: BigInt(upload.committed), finished: true };
  };

  return {
    stat(request) {
      const { fs } = filesOf(request.sandboxId, request.path);
      return { info: toWire(fsCall(request.path, () => fs.stat(request.path))) };
    },

    listFiles(request) {
      const { fs } = filesOf(request.sandboxId, request.path);
      return { entries: fsCall(request.path, () => fs.list(request.path)).map(toWire) };
    },

    makeDirectory(request) {
      const { fs } = filesOf(request.sandboxId, request.path);
      fsCall(request.path, () => fs.makeDirectory(request.path, request.createParents));
      return {};
    },

    remove(request) {
      const { fs } = filesOf(request.sandboxId, request.path);
      if (request.path === "/") throw new ConnectError("refusing to remove /", Code.InvalidArgument);
      fsCall(request.path, () => fs.remove(request.path, request.recursive));
      return {};
    },

    async *readFile(request) {
      const { fs } = filesOf(request.sandboxId, request.path);
      let offset = Number(request.offset);
      const bytes = fsCall(request.path, () => fs.read(request.path, offset));
      for (let at = 0; at < bytes.byteLength; at += READ_CHUNK_BYTES) {
        const data = bytes.slice(at, at + READ_CHUNK_BYTES); // the reader may keep or change it
        yield { offset: BigInt(offset), data };
        offset += data.byteLength;
      }
      yield { offset: BigInt(offset), data: new Uint8Array(0), eof: true };
    },

    async *watch(request, context) {
      const { fs } = filesOf(request.sandboxId, request.path);
      const wanted = new Set(request.filter);
      const keep = (type: WatchEventType) => wanted.size === 0 || wanted.has(type) || type === WatchEventType.OVERFLOW;
      const watch = fsCall(request.path, () => fs.watch(request.path, request.recursive));
      yield { ready: true };
      for await (const batch of watch.batches(context.signal)) {
        const events = batch.map((e) => ({ type: WATCH_TYPES[e.type], paths: e.paths })).filter((e) => keep(e.type));
        if (events.length > 0) yield { events };
      }
      if (!context.signal.aborted) yield { ended: true };
    },

    async writeFile(request) {
      const { sandbox, fs } = filesOf(request.sandboxId, request.path);
      checkId(request.uploadId, "upload id");
      if (request.data.byteLength > MAX_UPLOAD_CHUNK_BYTES) {
        throw new ConnectError(
          `a WriteFile chunk may carry at most ${MAX_UPLOAD_CHUNK_BYTES} bytes, got ${request.data.byteLength}`,
          Code.InvalidArgument,
        );
      }
      const key = `${sandbox.info.id}/${request.uploadId}`;
      const done = finished.get(key);
      if (done !== undefined) return { committedOffset: BigInt(done), finished: true };
      const offset = Number(request.offset);
      let upload = active.get(key);
      if (!upload) {
        if (offset !== 0) {
          throw new ConnectError(
            `upload ${request.uploadId} is not known here (it expired, or the server restarted): start it again from offset 0`,
            Code.FailedPrecondition,
          );
        }
        const created: Upload = {
          path: request.path,
          file: fsCall(request.path, () => fs.upload(request.path)),
          committed: 0,
          queue: Promise.resolve(),
          idle: unref(setTimeout(() => drop(key, created), UPLOAD_IDLE_MS)),
        };
        active.set(key, created);
        upload = created;
      }
      const current = upload;
      if (current.path !== request.path) {
        throw new ConnectError(
          `upload ${request.uploadId} writes ${current.path}, not ${request.path}`,
          Code.InvalidArgument,
        );
      }
      const step = current.queue.then(() =>
        write(key, current, request.uploadId, offset, request.data, request.finish),
      );
      current.queue = step.catch(() => {});
      try {
        return await step;
      } catch (error) {
        // A failed write or commit leaves nothing behind; the client starts over.
        if (!(error instanceof ConnectError && error.code === Code.FailedPrecondition)) drop(key, current);
        throw error;
      }
    },
  };
}

function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
