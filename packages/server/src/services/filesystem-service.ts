/**
 * FilesystemService: file calls checked, then carried out by the sandbox's runtime (inside
 * its root). Uploads are chunked: each WriteFile call adds the bytes at its offset to an
 * upload kept here by id, applied once however often a chunk is retried, and the last one
 * moves the file into place.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type FilesystemService, FileType, MAX_UPLOAD_CHUNK_BYTES, WatchEventType } from "@sbx/proto";
import { checkId, checkPath, filesystemError } from "@sbx/server-kit";
import type { Engine, ServerSandbox } from "../engine.js";
import {
  type RuntimeFileInfo,
  type RuntimeFilesystem,
  RuntimeFsError,
  type RuntimeUpload,
  type RuntimeWatchEventType,
} from "../runtime/runtime.js";
import { sandboxOf } from "./sandbox-service.js";

/** An upload with no chunk for this long is dropped (its temporary file removed). */
export const UPLOAD_IDLE_MS = 10 * 60_000;
/** How long a finished upload's answer is kept, for a retried last chunk. */
const FINISHED_KEPT_MS = 10 * 60_000;

const FILE_TYPES = {
  file: FileType.FILE,
  directory: FileType.DIRECTORY,
  symlink: FileType.SYMLINK,
  other: FileType.OTHER,
} as const;

const toWire = (info: RuntimeFileInfo) => ({
  name: info.name,
  path: info.path,
  type: FILE_TYPES[info.type],
  size: BigInt(info.size),
  mode: info.mode,
  mtimeMs: BigInt(Math.trunc(info.mtimeMs)),
  symlinkTarget: info.symlinkTarget ?? "",
});

const WATCH_TYPES: Record<RuntimeWatchEventType, WatchEventType> = {
  create: WatchEventType.CREATE,
  modify: WatchEventType.MODIFY,
  delete: WatchEventType.DELETE,
  rename: WatchEventType.RENAME,
  overflow: WatchEventType.OVERFLOW,
};

interface Upload {
  readonly path: string;
  readonly runtime: RuntimeUpload;
  committed: number;
  /** Chunks of one upload are applied one at a time, in arrival order. */
  queue: Promise<unknown>;
  idle: ReturnType<typeof setTimeout>;
}

/** Runs a file call, turning runtime failures into Connect errors with a FilesystemError detail. */
async function fsCall<A>(path: string, call: () => Promise<A>): Promise<A> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof RuntimeFsError) throw filesystemError(error.kind, path, error.message);
    throw error;
  }
}

function filesOf(engine: Engine, sandboxId: string, path: string): { sandbox: ServerSandbox; fs: RuntimeFilesystem } {
  const sandbox = sandboxOf(engine, sandboxId);
  checkPath(path);
  if (!sandbox.running || !sandbox.runtime) {
    throw new ConnectError(`sandbox ${sandboxId} has finished`, Code.FailedPrecondition);
  }
  sandbox.touch();
  return { sandbox, fs: sandbox.runtime.fs };
}

export function filesystemService(engine: Engine): ServiceImpl<typeof FilesystemService> {
  const uploads = new Map<string, Upload>();
  const finished = new Map<string, number>();

  const drop = (key: string, upload: Upload) => {
    clearTimeout(upload.idle);
    if (uploads.get(key) === upload) uploads.delete(key);
    upload.runtime.abort().catch(() => {});
  };

  return {
    async stat(request) {
      const { fs } = filesOf(engine, request.sandboxId, request.path);
      return { info: toWire(await fsCall(request.path, () => fs.stat(request.path))) };
    },

    async listFiles(request) {
      const { fs } = filesOf(engine, request.sandboxId, request.path);
      return { entries: (await fsCall(request.path, () => fs.list(request.path))).map(toWire) };
    },

    async makeDirectory(request) {
      const { fs } = filesOf(engine, request.sandboxId, request.path);
      await fsCall(request.path, () => fs.makeDirectory(request.path, request.createParents));
      return {};
    },

    async remove(request) {
      const { fs } = filesOf(engine, request.sandboxId, request.path);
      if (request.path === "/") throw new ConnectError("refusing to remove /", Code.InvalidArgument);
      await fsCall(request.path, () => fs.remove(request.path, request.recursive));
      return {};
    },

    async *readFile(request, context) {
      const { fs } = filesOf(engine, request.sandboxId, request.path);
      let offset = Number(request.offset);
      const chunks = await fsCall(request.path, () => fs.read(request.path, offset, context.signal));
      for await (const data of chunks) {
        yield { offset: BigInt(offset), data };
        offset += data.byteLength;
      }
      yield { offset: BigInt(offset), data: new Uint8Array(0), eof: true };
    },

    async *watch(request, context) {
      const { fs } = filesOf(engine, request.sandboxId, request.path);
      const wanted = new Set(request.filter);
      const keep = (type: WatchEventType) => wanted.size === 0 || wanted.has(type) || type === WatchEventType.OVERFLOW;
      const batches = await fsCall(request.path, () => fs.watch(request.path, request.recursive, context.signal));
      yield { ready: true };
      for await (const batch of batches) {
        const events = batch.map((e) => ({ type: WATCH_TYPES[e.type], paths: e.paths })).filter((e) => keep(e.type));
        if (events.length > 0) yield { events };
      }
      if (!context.signal.aborted) yield { ended: true };
    },

    async writeFile(request) {
      const { sandbox, fs } = filesOf(engine, request.sandboxId, request.path);
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
      let upload = uploads.get(key);
      const offset = Number(request.offset);
      if (!upload) {
        if (offset !== 0) {
          throw new ConnectError(
            `upload ${request.uploadId} is not known here (it expired, or the server restarted): start it again from offset 0`,
            Code.FailedPrecondition,
          );
        }
        const runtime = await fsCall(request.path, () => fs.upload(request.path));
        const created: Upload = {
          path: request.path,
          runtime,
          committed: 0,
          queue: Promise.resolve(),
          idle: setTimeout(() => drop(key, created), UPLOAD_IDLE_MS),
        };
        upload = uploads.get(key) ?? created; // a concurrent first chunk may have won
        if (upload === created) uploads.set(key, created);
        else runtime.abort().catch(() => {});
      }
      const current = upload;
      if (current.path !== request.path) {
        throw new ConnectError(
          `upload ${request.uploadId} writes ${current.path}, not ${request.path}`,
          Code.InvalidArgument,
        );
      }
      const step = current.queue.then(async () => {
        if (finished.has(key)) return { committedOffset: BigInt(finished.get(key) as number), finished: true };
        if (offset > current.committed) {
          throw new ConnectError(
            `upload ${request.uploadId}: chunk at offset ${offset}, but only ${current.committed} bytes are written`,
            Code.FailedPrecondition,
          );
        }
        clearTimeout(current.idle);
        current.idle = setTimeout(() => drop(key, current), UPLOAD_IDLE_MS);
        const fresh = request.data.subarray(Math.min(current.committed - offset, request.data.byteLength));
        if (fresh.byteLength > 0) {
          await fsCall(request.path, () => current.runtime.write(fresh));
          current.committed += fresh.byteLength;
        }
        if (!request.finish || offset + request.data.byteLength < current.committed) {
          return { committedOffset: BigInt(current.committed), finished: false };
        }
        clearTimeout(current.idle);
        uploads.delete(key);
        await fsCall(request.path, () => current.runtime.commit());
        finished.set(key, current.committed);
        setTimeout(() => finished.delete(key), FINISHED_KEPT_MS).unref();
        return { committedOffset: BigInt(current.committed), finished: true };
      });
      current.queue = step.catch(() => {});
      try {
        return await step;
      } catch (error) {
        // A failed write or commit leaves nothing behind; the client starts over.
        if (error instanceof ConnectError && error.code === Code.FailedPrecondition) throw error;
        drop(key, current);
        throw error;
      }
    },
  };
}
