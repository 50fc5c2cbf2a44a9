/**
 * FilesystemService: file calls checked, then carried out by the sandbox's runtime (inside
 * its root). Uploads are chunked WriteFile calls (see uploads.ts, shared with the raw files
 * route).
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type FilesystemService, FileType, MAX_UPLOAD_CHUNK_BYTES, WatchEventType } from "@sbx/proto";
import { checkId } from "@sbx/server-kit";
import type { Engine } from "../engine.js";
import type { RuntimeFileInfo, RuntimeWatchEventType } from "../runtime/runtime.js";
import { filesOf, fsCall } from "./filesystem-calls.js";
import type { Uploads } from "./uploads.js";

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

export function filesystemService(engine: Engine, uploads: Uploads): ServiceImpl<typeof FilesystemService> {
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
      const result = await uploads.apply({
        sandboxId: sandbox.info.id,
        fs,
        path: request.path,
        uploadId: request.uploadId,
        offset: Number(request.offset),
        data: request.data,
        finish: request.finish,
      });
      return { committedOffset: BigInt(result.committedOffset), finished: result.finished };
    },
  };
}
