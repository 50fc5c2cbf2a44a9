/**
 * File operations for the Effect API (`Files.readText`, `Files.writeBytes`, `Files.watch`, …):
 * what `sb.filesystem` does, as Effects and Streams, with the sandbox id first. Paths are
 * absolute (`InvalidError` otherwise); failures are the `SandboxFilesystem…Error` family.
 */
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import { InvalidError, type SandboxError } from "./errors.js";
import type { WatchOptions } from "./filesystem.js";
import { WATCH_EVENT_TYPES } from "./filesystem.js";
import {
  type FileInfo,
  type FileWatchEvent,
  fileChunks,
  listFiles as listFilesOp,
  makeDirectory as makeDirectoryOp,
  readFile,
  removePath,
  statPath,
  watchEvents,
  writeFile,
} from "./filesystem-ops.js";
import type { SbxConnection } from "./rpc.js";

export type { FileInfo, FileWatchEvent, FileWatchEventType } from "./filesystem-ops.js";

type Op<A> = Effect.Effect<A, SandboxError, SbxConnection>;

const encoder = new TextEncoder();

/** The file's bytes. */
export const readBytes = (sandboxId: string, path: string): Op<Uint8Array> => readFile(sandboxId, path);

/** The file's contents as UTF-8 text. */
export const readText = (sandboxId: string, path: string): Op<string> =>
  Effect.map(readFile(sandboxId, path), (bytes) => new TextDecoder().decode(bytes));

/** The file's bytes in chunks from byte `offset` (default 0), resuming after dropped connections. */
export const readStream = (
  sandboxId: string,
  path: string,
  options: { readonly offset?: number } = {},
): Stream.Stream<Uint8Array, SandboxError, SbxConnection> => fileChunks(sandboxId, path, options.offset ?? 0);

/** Writes bytes (parent directories created, an existing file replaced, its mode kept). */
export const writeBytes = (sandboxId: string, path: string, data: Uint8Array): Op<void> =>
  Effect.suspend(() =>
    data instanceof Uint8Array
      ? Effect.asVoid(writeFile(sandboxId, path, [data]))
      : Effect.fail(new InvalidError("writeBytes: data must be a Uint8Array")),
  );

/** Writes UTF-8 text (as `writeBytes`). */
export const writeText = (sandboxId: string, path: string, text: string): Op<void> =>
  Effect.suspend(() =>
    typeof text === "string"
      ? writeBytes(sandboxId, path, encoder.encode(text))
      : Effect.fail(new InvalidError("writeText: data must be a string")),
  );

/** Writes a file from chunks as they come, with bounded memory. */
export const writeStream = (
  sandboxId: string,
  path: string,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Op<void> => Effect.asVoid(writeFile(sandboxId, path, source));

/** The entries of a directory, sorted by name; symlinks are described, not followed. */
export const listFiles = (sandboxId: string, path: string): Op<FileInfo[]> => listFilesOp(sandboxId, path);

/** One path's metadata; a symlink is described, not followed. */
export const stat = (sandboxId: string, path: string): Op<FileInfo> => statPath(sandboxId, path);

/** Creates a directory; with `createParents` (default) missing parents too, and an existing one is fine. */
export const makeDirectory = (
  sandboxId: string,
  path: string,
  options: { readonly createParents?: boolean } = {},
): Op<void> => makeDirectoryOp(sandboxId, path, options.createParents ?? true);

/** Removes a file, a symlink, an empty directory, or (`recursive`) a directory and its contents. */
export const remove = (sandboxId: string, path: string, options: { readonly recursive?: boolean } = {}): Op<void> =>
  removePath(sandboxId, path, options.recursive ?? false);

/**
 * Changes under `path` as they happen (see `sb.filesystem.watch`); `onReady` runs once the
 * watch is in place. The stream ends when the sandbox stops; interrupt it to stop watching
 * (`Stream.take`, `Stream.interruptAfter`, …).
 */
export const watch = (
  sandboxId: string,
  path: string,
  options: Pick<WatchOptions, "recursive" | "filter"> & { readonly onReady?: () => void } = {},
): Stream.Stream<FileWatchEvent, SandboxError, SbxConnection> => {
  const filter = options.filter ?? [];
  if (!Array.isArray(filter) || filter.some((type) => !(WATCH_EVENT_TYPES as readonly string[]).includes(type))) {
    return Stream.fail(
      new InvalidError(`filter must list event types (${WATCH_EVENT_TYPES.join(", ")}), got ${JSON.stringify(filter)}`),
    );
  }
  return watchEvents(sandboxId, path, {
    recursive: options.recursive ?? false,
    filter,
    onReady: options.onReady ?? (() => {}),
  });
};
