/**
 * FilesystemService: file calls checked, then carried out by the sandbox's runtime (inside
 * its root). Uploads are chunked WriteFile calls (server-kit's Uploads, shared with the raw
 * files route).
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type FilesystemService, MAX_UPLOAD_CHUNK_BYTES } from "@sbx/proto";
import { checkId } from "../../validation.js";
import type { Engine } from "../engine.js";
import { filesOf, fsCall, startUpload } from "./filesystem-calls.js";
import { fileInfoToWire, watchEventsToWire } from "./filesystem-wire.js";

export function filesystemService(engine: Engine): ServiceImpl<typeof FilesystemService> {
  return {
    async stat(request) {
      const { fs } = filesOf(engine, request.sandboxId, request.path);
      return { info: fileInfoToWire(await fsCall(request.path, () => fs.stat(request.path))) };
    },

    async listFiles(request) {
      const { fs } = filesOf(engine, request.sandboxId, request.path);
      return { entries: (await fsCall(request.path, () => fs.list(request.path))).map(fileInfoToWire) };
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
      const batches = await fsCall(request.path, () => fs.watch(request.path, request.recursive, context.signal));
      yield { ready: true };
      for await (const batch of batches) {
        const events = watchEventsToWire(batch, request.filter);
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
      const result = await engine.uploads.apply({
        sandboxId: sandbox.info.id,
        path: request.path,
        start: () => startUpload(fs, request.path),
        uploadId: request.uploadId,
        offset: Number(request.offset),
        data: request.data,
        finish: request.finish,
      });
      return { committedOffset: BigInt(result.committedOffset), finished: result.finished };
    },
  };
}
