/**
 * File operations as Effects over `SbxRpc`. Downloads are a resumable server stream (a cut
 * stream is reopened at the next byte); uploads are chunked WriteFile calls at offsets, each
 * retried on its own, so a dropped connection costs one chunk, never the whole file.
 */
import { FileType, WatchEventType, type FileInfo as WireFileInfo } from "@sbx/proto";
import { Effect, Stream } from "effect";
import { ConnectionError, InternalError, InvalidError, type SandboxError } from "./errors.js";
import { randomId } from "./ids.js";
import { call, retrySchedule, SbxRpc } from "./rpc.js";
import { markTransient, toSandboxError } from "./rpc-errors.js";
import { concat } from "./stream-reader.js";
import { validateAbsolutePath } from "./validation.js";

export interface FileInfo {
  /** The last path component. */
  readonly name: string;
  /** Absolute path inside the sandbox. */
  readonly path: string;
  readonly type: "file" | "directory" | "symlink" | "other";
  readonly size: number;
  /** Permission bits, e.g. 0o644. */
  readonly mode: number;
  readonly mtimeMs: number;
  /** Where a symlink points (symlinks are described, not followed). */
  readonly symlinkTarget?: string;
}

/** Bytes per WriteFile call (the server takes up to MAX_UPLOAD_CHUNK_BYTES). */
export const UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024;

const TYPES: Record<number, FileInfo["type"]> = {
  [FileType.FILE]: "file",
  [FileType.DIRECTORY]: "directory",
  [FileType.SYMLINK]: "symlink",
};

export const fileInfoOf = (info: WireFileInfo): FileInfo => ({
  name: info.name,
  path: info.path,
  type: TYPES[info.type] ?? "other",
  size: Number(info.size),
  mode: info.mode,
  mtimeMs: Number(info.mtimeMs),
  ...(info.symlinkTarget ? { symlinkTarget: info.symlinkTarget } : {}),
});

const pathOf = (path: unknown) => validateAbsolutePath(path, "path");

export const statPath = (sandboxId: string, path: string): Effect.Effect<FileInfo, SandboxError, SbxRpc> =>
  Effect.suspend(() => {
    const p = pathOf(path);
    return call(`stat ${p}`, (rpc, o) => rpc.files.stat({ sandboxId, path: p }, o)).pipe(
      Effect.flatMap((r) =>
        r.info ? Effect.succeed(fileInfoOf(r.info)) : Effect.fail(new InternalError(`stat ${p}: no info`)),
      ),
    );
  });

export const listFiles = (sandboxId: string, path: string): Effect.Effect<FileInfo[], SandboxError, SbxRpc> =>
  Effect.suspend(() => {
    const p = pathOf(path);
    return call(`list ${p}`, (rpc, o) => rpc.files.listFiles({ sandboxId, path: p }, o)).pipe(
      Effect.map((r) => r.entries.map(fileInfoOf)),
    );
  });

export const makeDirectory = (
  sandboxId: string,
  path: string,
  createParents: boolean,
): Effect.Effect<void, SandboxError, SbxRpc> =>
  Effect.suspend(() => {
    const p = pathOf(path);
    return call(`make directory ${p}`, (rpc, o) =>
      rpc.files.makeDirectory({ sandboxId, path: p, createParents }, o),
    ).pipe(Effect.asVoid);
  });

export const removePath = (
  sandboxId: string,
  path: string,
  recursive: boolean,
): Effect.Effect<void, SandboxError, SbxRpc> =>
  Effect.suspend(() => {
    const p = pathOf(path);
    return call(`remove ${p}`, (rpc, o) => rpc.files.remove({ sandboxId, path: p, recursive }, o)).pipe(Effect.asVoid);
  });

/** A file's bytes from `fromOffset` on, surviving dropped connections. */
export const fileChunks = (
  sandboxId: string,
  path: string,
  fromOffset = 0,
): Stream.Stream<Uint8Array, SandboxError, SbxRpc> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const p = pathOf(path);
      const rpc = yield* SbxRpc;
      const cursor = { offset: fromOffset };
      const what = `read ${p}`;
      async function* attempt(): AsyncGenerator<Uint8Array> {
        const controller = new AbortController();
        try {
          let ended = false;
          for await (const message of rpc.files.readFile(
            { sandboxId, path: p, offset: BigInt(cursor.offset) },
            { signal: controller.signal, headers: rpc.headers },
          )) {
            if (ended) continue;
            const start = Number(message.offset);
            if (start !== cursor.offset)
              throw new InternalError(`${what}: got byte ${start}, expected ${cursor.offset}`);
            if (message.data.byteLength > 0) {
              cursor.offset += message.data.byteLength;
              yield message.data;
            }
            if (message.eof) ended = true;
          }
          if (!ended) throw markTransient(new ConnectionError(`${what}: the stream ended before the end of the file`));
        } finally {
          controller.abort();
        }
      }
      const once = Stream.suspend(() => Stream.fromAsyncIterable(attempt(), (error) => toSandboxError(error, what)));
      return once.pipe(Stream.retry(retrySchedule(rpc.config)));
    }),
  );

export const readFile = (sandboxId: string, path: string): Effect.Effect<Uint8Array, SandboxError, SbxRpc> =>
  fileChunks(sandboxId, path).pipe(
    Stream.runCollect,
    Effect.map((chunks) => concat(Array.from(chunks))),
  );

/**
 * Writes a file from chunks: each is sent (split to UPLOAD_CHUNK_BYTES) as a WriteFile call
 * at its offset; the last call moves the file into place. An empty source writes an empty file.
 */
export const writeFile = (
  sandboxId: string,
  path: string,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Effect.Effect<number, SandboxError, SbxRpc> =>
  Effect.gen(function* () {
    const p = pathOf(path);
    const uploadId = randomId("up-");
    const what = `write ${p}`;
    let offset = 0;
    let pending: Uint8Array | undefined;
    const send = (data: Uint8Array, finish: boolean) =>
      call(what, (rpc, o) =>
        rpc.files.writeFile({ sandboxId, path: p, uploadId, offset: BigInt(offset), data, finish }, o),
      );
    const iterator = yield* Effect.sync(() =>
      Symbol.asyncIterator in source
        ? (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
        : (source as Iterable<Uint8Array>)[Symbol.iterator](),
    );
    for (;;) {
      const next = yield* Effect.tryPromise({
        try: async () => await iterator.next(),
        catch: (error) =>
          new InvalidError(`${what}: reading the data to write failed: ${(error as Error).message}`, { cause: error }),
      });
      if (next.done) break;
      const data = next.value;
      if (!(data instanceof Uint8Array)) return yield* Effect.fail(new InvalidError(`${what}: data must be bytes`));
      for (let at = 0; at < data.byteLength; at += UPLOAD_CHUNK_BYTES) {
        // Hold one chunk back, so the last one can carry `finish`.
        if (pending) {
          yield* send(pending, false);
          offset += pending.byteLength;
        }
        pending = data.subarray(at, at + UPLOAD_CHUNK_BYTES);
      }
    }
    const last = pending ?? new Uint8Array(0);
    const response = yield* send(last, true);
    return Number(response.committedOffset);
  });

/** What changed: "overflow" means events were lost (a slow reader, or a reconnect) — rescan if it matters. */
export type FileWatchEventType = "create" | "modify" | "delete" | "rename" | "overflow";

export interface FileWatchEvent {
  readonly type: FileWatchEventType;
  /** Absolute paths inside the sandbox; a rename seen from both sides is [from, to]. */
  readonly paths: readonly string[];
}

export const WATCH_EVENT_TYPES = ["create", "modify", "delete", "rename"] as const;

const WIRE_WATCH_TYPES: Record<FileWatchEventType, WatchEventType> = {
  create: WatchEventType.CREATE,
  modify: WatchEventType.MODIFY,
  delete: WatchEventType.DELETE,
  rename: WatchEventType.RENAME,
  overflow: WatchEventType.OVERFLOW,
};
const WATCH_TYPES_OF_WIRE = new Map(
  Object.entries(WIRE_WATCH_TYPES).map(([name, wire]) => [wire, name as FileWatchEventType]),
);

/**
 * Changes under `path` as they happen. `onReady` runs once the watch is in place. A cut
 * connection is reopened; since changes in between are not seen, an "overflow" event says so.
 * The stream ends when the sandbox stops.
 */
export const watchEvents = (
  sandboxId: string,
  path: string,
  options: { recursive: boolean; filter: readonly FileWatchEventType[]; onReady: () => void },
): Stream.Stream<FileWatchEvent, SandboxError, SbxRpc> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const p = pathOf(path);
      const rpc = yield* SbxRpc;
      const what = `watch ${p}`;
      const filter = options.filter.map((type) => WIRE_WATCH_TYPES[type]);
      let readyBefore = false;
      async function* attempt(): AsyncGenerator<FileWatchEvent> {
        const controller = new AbortController();
        try {
          for await (const message of rpc.files.watch(
            { sandboxId, path: p, recursive: options.recursive, filter },
            { signal: controller.signal, headers: rpc.headers },
          )) {
            if (message.ready) {
              if (readyBefore) yield { type: "overflow", paths: [] };
              else options.onReady();
              readyBefore = true;
            }
            for (const event of message.events) {
              const type = WATCH_TYPES_OF_WIRE.get(event.type);
              if (type) yield { type, paths: event.paths };
            }
            if (message.ended) return;
          }
          throw markTransient(new ConnectionError(`${what}: the stream was cut`));
        } finally {
          controller.abort();
        }
      }
      const once = Stream.suspend(() => Stream.fromAsyncIterable(attempt(), (error) => toSandboxError(error, what)));
      return once.pipe(Stream.retry(retrySchedule(rpc.config)));
    }),
  );
