/**
 * File operations as Effects over `SbxConnection`. Downloads are a resumable server stream (a cut
 * stream is reopened at the next byte); uploads are chunked WriteFile calls at offsets, each
 * retried on its own, so a dropped connection costs one chunk, never the whole file.
 */
import type { CallOptions } from "@connectrpc/connect";
import type { FilesystemError, FileInfo as WireFileInfo } from "@sbx/proto";
import { FilesystemErrorKind, FileType, WatchEventType } from "@sbx/proto/wire";
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import { concat, skipBytes } from "./bytes.js";
import {
  ConnectionError,
  InternalError,
  InvalidError,
  type SandboxError,
  SandboxFilesystemPathAlreadyExistsError,
} from "./errors.js";
import { randomId } from "./ids.js";
import { type RawHttpClient, rawFilePath } from "./raw-routes.js";
import { call, retryingStream, SbxConnection, type SbxConnectionShape } from "./rpc.js";
import { markTransient, toSandboxError } from "./rpc-errors.js";
import { detailOf, rpcFailureFromJson, rpcFailureOf } from "./rpc-failure.js";
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
/** Download chunks are passed on at about this size. */
const DOWNLOAD_CHUNK_BYTES = 1024 * 1024;
/** Bytes per raw PUT: larger, since the server streams it to the file without holding it. */
export const RAW_UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024;

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

/** The path, validated: a bad one fails the effect with `InvalidError` (thrown, it would be a defect). */
const pathOf = (path: unknown): Effect.Effect<string, InvalidError> =>
  Effect.try({ try: () => validateAbsolutePath(path, "path"), catch: (error) => error as InvalidError });

export const statPath = (sandboxId: string, path: string): Effect.Effect<FileInfo, SandboxError, SbxConnection> =>
  Effect.flatMap(pathOf(path), (p) => {
    return call(`stat ${p}`, (rpc, o) => rpc.files.stat({ sandboxId, path: p }, o)).pipe(
      Effect.flatMap((r) =>
        r.info ? Effect.succeed(fileInfoOf(r.info)) : Effect.fail(new InternalError(`stat ${p}: no info`)),
      ),
    );
  });

export const listFiles = (sandboxId: string, path: string): Effect.Effect<FileInfo[], SandboxError, SbxConnection> =>
  Effect.flatMap(pathOf(path), (p) => {
    return call(`list ${p}`, (rpc, o) => rpc.files.listFiles({ sandboxId, path: p }, o)).pipe(
      Effect.map((r) => r.entries.map(fileInfoOf)),
    );
  });

/** The FilesystemError kind a failed call carries, if any. */
function filesystemKindOf(error: unknown): FilesystemErrorKind | undefined {
  return detailOf<FilesystemError>(rpcFailureOf(error), "sbx.v1.FilesystemError")?.kind;
}

/**
 * Runs a call that is not idempotent on the wire (it fails when repeated after it worked),
 * treating `alreadyDone` on a retry as the earlier attempt having been applied (its answer lost).
 */
function onceOnRetry<A>(
  what: string,
  invoke: (rpc: SbxConnectionShape, options: CallOptions) => Promise<A>,
  alreadyDone: FilesystemErrorKind,
  check: () => Effect.Effect<boolean, SandboxError, SbxConnection> = () => Effect.succeed(true),
): Effect.Effect<void, SandboxError, SbxConnection> {
  let attempted = false;
  let doneBefore = false;
  return call(what, async (rpc, options) => {
    const retry = attempted;
    attempted = true;
    try {
      await invoke(rpc, options);
    } catch (error) {
      if (!retry || filesystemKindOf(error) !== alreadyDone) throw error;
      doneBefore = true;
    }
  }).pipe(
    Effect.flatMap(() => (doneBefore ? check() : Effect.succeed(true))),
    Effect.flatMap((ok) =>
      ok
        ? Effect.void
        : Effect.fail(new SandboxFilesystemPathAlreadyExistsError(`${what}: the path exists and is not a directory`)),
    ),
  );
}

export const makeDirectory = (
  sandboxId: string,
  path: string,
  createParents: boolean,
): Effect.Effect<void, SandboxError, SbxConnection> =>
  Effect.flatMap(pathOf(path), (p) => {
    // Without parents, a retry after a lost answer finds the directory made: that is success.
    return onceOnRetry(
      `make directory ${p}`,
      (rpc, o) => rpc.files.makeDirectory({ sandboxId, path: p, createParents }, o),
      FilesystemErrorKind.ALREADY_EXISTS,
      () => statPath(sandboxId, p).pipe(Effect.map((info) => info.type === "directory")),
    );
  });

export const removePath = (
  sandboxId: string,
  path: string,
  recursive: boolean,
): Effect.Effect<void, SandboxError, SbxConnection> =>
  Effect.flatMap(pathOf(path), (p) => {
    // A retry after a lost answer finds the path gone: that is success.
    return onceOnRetry(
      `remove ${p}`,
      (rpc, o) => rpc.files.remove({ sandboxId, path: p, recursive }, o),
      FilesystemErrorKind.NOT_FOUND,
    );
  });

/** Downloaded pieces passed on together (one pull of the stream), never empty. */
type PieceGroup = readonly [Uint8Array, ...Uint8Array[]];

/** A file's bytes from `fromOffset` on, surviving dropped connections. */
export const fileChunks = (
  sandboxId: string,
  path: string,
  fromOffset = 0,
): Stream.Stream<Uint8Array, SandboxError, SbxConnection> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const p = yield* pathOf(path);
      const rpc = yield* SbxConnection;
      const cursor = { offset: fromOffset, raw: rpc.rawHttp !== undefined };
      const what = `read ${p}`;
      /** The bytes through a raw GET; false when the server would not serve it (then Connect). */
      async function* rawAttempt(raw: RawHttpClient, signal: AbortSignal): AsyncGenerator<PieceGroup, boolean> {
        let body: AsyncIterable<Uint8Array> | undefined;
        try {
          body = await raw.get({
            route: "files",
            path: rawFilePath(sandboxId, p, cursor.offset),
            headers: rpc.headers,
            signal,
          });
          if (!body) return false;
          // Pieces are passed on in groups of ~1 MiB, as they came (never copied): a network read
          // is often 16–64 KiB, and each pull of the stream costs the same, whatever it carries.
          // Only bytes passed on count.
          let held: Uint8Array[] = [];
          let heldBytes = 0;
          const release = () => {
            const group = held as unknown as PieceGroup;
            cursor.offset += heldBytes;
            held = [];
            heldBytes = 0;
            return group;
          };
          for await (const piece of body) {
            if (piece.byteLength === 0) continue;
            held.push(piece);
            heldBytes += piece.byteLength;
            if (heldBytes >= DOWNLOAD_CHUNK_BYTES) yield release();
          }
          if (heldBytes > 0) yield release();
          return true;
        } catch (error) {
          if (signal.aborted) throw error;
          throw markTransient(new ConnectionError(`${what}: ${(error as Error).message}`, { cause: error }));
        }
      }
      async function* attempt(controller: AbortController): AsyncGenerator<PieceGroup> {
        try {
          if (cursor.raw && rpc.rawHttp) {
            if (yield* rawAttempt(rpc.rawHttp, controller.signal)) return;
            cursor.raw = false; // errors come back typed through ReadFile
          }
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
              yield [message.data];
            }
            if (message.eof) ended = true;
          }
          if (!ended) throw markTransient(new ConnectionError(`${what}: the stream ended before the end of the file`));
        } finally {
          controller.abort();
        }
      }
      const once = Stream.suspend(() =>
        Stream.fromAsyncIterable(abortOnReturn(attempt), (error) =>
          toSandboxError(error, what, rpc.config.endpoint),
        ).pipe(Stream.flattenArray),
      );
      return retryingStream(once, rpc.config);
    }),
  );

/**
 * One attempt as an async iterable whose `return()` aborts its request at once. An async
 * generator's own `return()` waits for its pending `next()` — the next message from the
 * server, which for a quiet watch never comes — so a consumer that stops (break, close(),
 * an interrupted stream) would leave the request open until the sandbox ends. Browsers allow
 * six HTTP/1.1 connections per origin: a few such leftovers and every later call waits.
 */
function abortOnReturn<A>(attempt: (controller: AbortController) => AsyncGenerator<A>): AsyncIterable<A> {
  return {
    [Symbol.asyncIterator]() {
      const controller = new AbortController();
      const inner = attempt(controller);
      return {
        next: () => inner.next(),
        return: (value?: unknown) => {
          controller.abort();
          return inner.return(value as undefined);
        },
      };
    },
  };
}

export const readFile = (sandboxId: string, path: string): Effect.Effect<Uint8Array, SandboxError, SbxConnection> =>
  fileChunks(sandboxId, path).pipe(
    Stream.runCollect,
    Effect.map((chunks) => concat(Array.from(chunks))),
  );

/** One upload chunk as a raw PUT: its answer, or undefined when the server lacks the route. */
async function rawPut(
  raw: RawHttpClient,
  rpc: SbxConnectionShape,
  options: CallOptions,
  chunk: { sandboxId: string; path: string; uploadId: string; offset: number; data: Pieces; finish: boolean },
): Promise<{ committedOffset: bigint; finished: boolean } | undefined> {
  const signal = options.timeoutMs
    ? AbortSignal.any([options.signal ?? new AbortController().signal, AbortSignal.timeout(options.timeoutMs)])
    : options.signal;
  let answer: Awaited<ReturnType<RawHttpClient["put"]>>;
  try {
    answer = await raw.put({
      route: "files",
      path: rawFilePath(chunk.sandboxId, chunk.path, chunk.offset, { id: chunk.uploadId, finish: chunk.finish }),
      headers: rpc.headers,
      signal: signal ?? new AbortController().signal,
      body: chunk.data,
    });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    throw markTransient(new ConnectionError(`upload failed: ${(error as Error).message}`, { cause: error }));
  }
  if (!answer) return undefined;
  const json = answer.json as { committedOffset?: number; finished?: boolean };
  if (answer.status !== 200) throw rpcFailureFromJson(answer.json, answer.status);
  return { committedOffset: BigInt(json.committedOffset ?? 0), finished: json.finished === true };
}

/** An upload chunk as the pieces it was read in (never copied into one buffer on the raw path). */
type Pieces = readonly Uint8Array[];

const sizeOf = (pieces: Pieces) => pieces.reduce((n, piece) => n + piece.byteLength, 0);

/**
 * Pieces of any size grouped into chunks of `size` bytes (the last may be shorter). A chunk
 * is the pieces themselves (views, no copy), or with `free`, one buffer they are copied into,
 * taken from `free` when a sent chunk's buffer was given back: for sources that reuse their
 * memory (a piece is valid until the next is asked for), and it spares the page faults of
 * fresh memory for every piece.
 */
async function* group(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  size: () => number,
  free?: ArrayBuffer[],
): AsyncGenerator<Uint8Array[]> {
  let chunk: Uint8Array[] = [];
  let copy: Uint8Array | undefined;
  let filled = 0;
  // Fixed when a chunk starts: `size` may change meanwhile (raw HTTP → Connect), and a chunk
  // of either size can be sent either way.
  let limit = 0;
  const done = () => (copy ? [copy.subarray(0, filled)] : chunk);
  for await (const piece of source) {
    if (!(piece instanceof Uint8Array)) throw new InvalidError("data must be bytes");
    let at = 0;
    while (at < piece.byteLength) {
      if (filled === 0) {
        copy = free && new Uint8Array(free.pop() ?? new ArrayBuffer(RAW_UPLOAD_CHUNK_BYTES));
        limit = size(); // never more than RAW_UPLOAD_CHUNK_BYTES
      }
      const n = Math.min(limit - filled, piece.byteLength - at);
      const part = piece.subarray(at, at + n);
      if (copy) copy.set(part, filled);
      else chunk.push(part);
      filled += n;
      at += n;
      if (filled >= limit) {
        yield done();
        chunk = [];
        filled = 0;
      }
    }
  }
  if (filled > 0) yield done();
}

export interface WriteFileOptions {
  /**
   * The source reuses its memory: a piece is valid only until the next is asked for (local
   * file readers). Pieces are then copied into upload chunks instead of being held.
   */
  readonly piecesReused?: boolean;
}

/**
 * Writes a file from chunks: they are regrouped into upload chunks (raw PUTs when the
 * adapter has raw HTTP, else WriteFile calls), each at its offset and retried on its own;
 * the last one moves the file into place. An empty source writes an empty file.
 */
export const writeFile = (
  sandboxId: string,
  path: string,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: WriteFileOptions = {},
): Effect.Effect<number, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const p = yield* pathOf(path);
    const rpc = yield* SbxConnection;
    const uploadId = randomId("up-");
    const what = `write ${p}`;
    let raw = rpc.rawHttp;
    let offset = 0;
    const send = (data: Pieces, finish: boolean) =>
      Effect.gen(function* () {
        if (raw) {
          const via = raw;
          let retry = false;
          const answer = yield* call(what, async (r, o) => {
            const chunk = { sandboxId, path: p, uploadId, offset, data, finish };
            if (retry) {
              // After a cut, ask how far the server got (an empty chunk) and send only the rest.
              const state = await rawPut(via, r, o, { ...chunk, data: [], finish: false });
              const skip = Math.min(Math.max(Number(state?.committedOffset ?? offset) - offset, 0), sizeOf(data));
              chunk.offset += skip;
              chunk.data = skipBytes(data, skip);
            }
            retry = true;
            return rawPut(via, r, o, chunk);
          });
          if (answer) return answer;
          raw = undefined; // the server has no raw route: WriteFile from here on
        }
        const bytes = data.length === 1 ? (data[0] as Uint8Array) : concat([...data]);
        let answer: { committedOffset: bigint; finished: boolean } | undefined;
        for (let at = 0; at === 0 || at < bytes.byteLength; at += UPLOAD_CHUNK_BYTES) {
          const piece = bytes.subarray(at, at + UPLOAD_CHUNK_BYTES);
          const last = at + UPLOAD_CHUNK_BYTES >= bytes.byteLength;
          const from = BigInt(offset + at);
          answer = yield* call(what, (r, o) =>
            r.files.writeFile({ sandboxId, path: p, uploadId, offset: from, data: piece, finish: finish && last }, o),
          );
        }
        return answer as { committedOffset: bigint; finished: boolean };
      });
    const chunkSize = () => (raw ? RAW_UPLOAD_CHUNK_BYTES : UPLOAD_CHUNK_BYTES);
    // Buffers of sent chunks, filled again (only when pieces are copied).
    const free: ArrayBuffer[] | undefined = options.piecesReused ? [] : undefined;
    const chunks = group(source, chunkSize, free)[Symbol.asyncIterator]();
    const next = () =>
      Effect.tryPromise({
        try: () => chunks.next(),
        catch: (error) =>
          error instanceof InvalidError
            ? new InvalidError(`${what}: ${error.message}`)
            : new InvalidError(`${what}: reading the data to write failed: ${(error as Error).message}`, {
                cause: error,
              }),
      });
    // The last chunk carries `finish`, so one chunk is always read ahead; the one after that
    // is read while a chunk is being sent.
    let current = yield* next();
    if (current.done) return Number((yield* send([], true)).committedOffset);
    let following = yield* next();
    while (!following.done) {
      const sending = current.value;
      const [after] = yield* Effect.all([next(), send(sending, false)], { concurrency: 2 });
      offset += sizeOf(sending);
      // Sent and answered: nothing holds its bytes any more (copied chunks are one buffer).
      free?.push((sending[0] as Uint8Array).buffer as ArrayBuffer);
      current = following;
      following = after;
    }
    return Number((yield* send(current.value, true)).committedOffset);
  });

/** What changed: "overflow" means events were lost (a slow reader, or a reconnect) — rescan if it matters. */
export type FileWatchEventType = "create" | "modify" | "delete" | "rename" | "overflow";

export interface FileWatchEvent {
  readonly type: FileWatchEventType;
  /** Absolute paths inside the sandbox; a rename seen from both sides is [from, to]. */
  readonly paths: readonly string[];
}

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
): Stream.Stream<FileWatchEvent, SandboxError, SbxConnection> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const p = yield* pathOf(path);
      const rpc = yield* SbxConnection;
      const what = `watch ${p}`;
      const filter = options.filter.map((type) => WIRE_WATCH_TYPES[type]);
      let readyBefore = false;
      async function* attempt(controller: AbortController): AsyncGenerator<FileWatchEvent> {
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
      const once = Stream.suspend(() =>
        Stream.fromAsyncIterable(abortOnReturn(attempt), (error) => toSandboxError(error, what, rpc.config.endpoint)),
      );
      return retryingStream(once, rpc.config);
    }),
  );
