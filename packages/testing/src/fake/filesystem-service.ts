/**
 * FilesystemService over each fake sandbox's in-memory tree (filesystem.ts), with the real
 * server's checks, errors (a FilesystemError detail via `filesystemError`) and upload rules
 * (server-kit's Uploads, which the real server uses too).
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type FilesystemService, MAX_UPLOAD_CHUNK_BYTES } from "@sbx/proto";
import {
  checkId,
  checkPath,
  fileInfoToWire,
  filesystemError,
  Uploads,
  type UploadTarget,
  watchEventsToWire,
} from "@sbx/server-kit";
import { type FakeFilesystem, FakeFsError } from "./filesystem.js";
import type { FakeSandbox } from "./model.js";
import type { FakeState } from "./state.js";

/** Bytes per ReadFile message. */
const READ_CHUNK_BYTES = 256 * 1024;

/** Runs a file operation, turning its failure into a Connect error with a FilesystemError detail. */
function fsCall<A>(path: string, call: () => A): A {
  try {
    return call();
  } catch (error) {
    if (error instanceof FakeFsError) throw filesystemError(error.kind, path, error.message);
    throw error;
  }
}

/** Starts an upload to `path` in the fake tree, its failures reported as file errors. */
function startUpload(fs: FakeFilesystem, path: string): UploadTarget {
  const file = fsCall(path, () => fs.upload(path));
  return {
    write: (data) => fsCall(path, () => file.write(data)),
    commit: () => fsCall(path, () => file.commit()),
    abort: () => file.abort(),
  };
}

export function filesystemService(state: FakeState): ServiceImpl<typeof FilesystemService> {
  const uploads = new Uploads();

  const filesOf = (sandboxId: string, path: string): { sandbox: FakeSandbox; fs: FakeFilesystem } => {
    const sandbox = state.sandbox(sandboxId);
    checkPath(path);
    if (!sandbox.running) throw new ConnectError(`sandbox ${sandboxId} has finished`, Code.FailedPrecondition);
    sandbox.touch();
    return { sandbox, fs: sandbox.fs };
  };

  return {
    stat(request) {
      const { fs } = filesOf(request.sandboxId, request.path);
      return { info: fileInfoToWire(fsCall(request.path, () => fs.stat(request.path))) };
    },

    listFiles(request) {
      const { fs } = filesOf(request.sandboxId, request.path);
      return { entries: fsCall(request.path, () => fs.list(request.path)).map(fileInfoToWire) };
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
      const watch = fsCall(request.path, () => fs.watch(request.path, request.recursive));
      yield { ready: true };
      for await (const batch of watch.batches(context.signal)) {
        const events = watchEventsToWire(batch, request.filter);
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
      const result = await uploads.apply({
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
