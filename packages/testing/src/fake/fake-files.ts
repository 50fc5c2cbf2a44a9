/**
 * A fake sandbox's files as the runtime driver seam wants them (`RuntimeFilesystem`): the
 * in-memory tree's agent-level calls, made asynchronous, reads in chunks as the agent sends.
 */
import type { RuntimeFilesystem, RuntimeUpload, RuntimeWatchEvent } from "@sbx/server-kit";
import type { FakeFilesystem } from "./filesystem.js";

/** Bytes per chunk of a read. */
const READ_CHUNK_BYTES = 256 * 1024;

export function fakeRuntimeFiles(fs: FakeFilesystem): RuntimeFilesystem {
  return {
    stat: async (path) => fs.stat(path),
    list: async (path) => fs.list(path),
    makeDirectory: async (path, createParents) => fs.makeDirectory(path, createParents),
    remove: async (path, recursive) => fs.remove(path, recursive),
    async read(path, offset) {
      const bytes = fs.read(path, offset); // fails now, before the first chunk
      return (async function* () {
        for (let at = 0; at < bytes.byteLength; at += READ_CHUNK_BYTES) {
          yield bytes.slice(at, at + READ_CHUNK_BYTES); // the reader may keep or change it
        }
      })();
    },
    async upload(path): Promise<RuntimeUpload> {
      const file = fs.upload(path);
      return {
        write: async (data) => file.write(data),
        commit: async () => file.commit(),
        abort: async () => file.abort(),
      };
    },
    async watch(path, recursive, signal): Promise<AsyncIterable<RuntimeWatchEvent[]>> {
      return fs.watch(path, recursive).batches(signal);
    },
  };
}
