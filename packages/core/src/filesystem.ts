/**
 * `sb.filesystem`: files inside a sandbox (Modal's `filesystem` namespace). Every path is
 * absolute and resolves inside the sandbox. Large files stream in chunks both ways, so memory
 * stays bounded; reads resume after a dropped connection, writes resend one chunk at most,
 * and a written file appears all at once (written beside it, then renamed into place).
 */
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import type { EffectRunner } from "./effect-runner.js";
import { InvalidError, type SandboxError } from "./errors.js";
import type { FileInfo, FileWatchEvent, FileWatchEventType } from "./filesystem-ops.js";
import { loadOnFirstUse } from "./load-on-first-use.js";
import type { SbxConnection } from "./rpc.js";
import { validateAbsolutePath, validateDuration } from "./validation.js";

export type { FileInfo, FileWatchEvent, FileWatchEventType };

/** The event types a watch can be filtered to. */
export const WATCH_EVENT_TYPES = ["create", "modify", "delete", "rename"] as const;

/**
 * The file operations (Effects), loaded on first use: an app that never touches files does
 * not download them (with a bundler that splits code at `import()`).
 */
const fileOps = () => loadOnFirstUse(() => import("./filesystem-ops.js"));

/** A stream of the file operations', loaded as `fileOps`. */
const opsStream = <A>(
  use: (ops: typeof import("./filesystem-ops.js")) => Stream.Stream<A, SandboxError, SbxConnection>,
): Stream.Stream<A, SandboxError, SbxConnection> =>
  Stream.unwrap(Effect.map(Effect.tryPromise({ try: fileOps, catch: (error) => error as SandboxError }), use));

export interface WatchOptions extends FileCallOptions {
  /** Also report changes in every directory below `path` (new ones included). */
  readonly recursive?: boolean;
  /** Only these kinds of events ("overflow" is always reported). */
  readonly filter?: readonly Exclude<FileWatchEventType, "overflow">[];
  /** Stop quietly after this long (0 or absent: watch until closed or the sandbox stops). */
  readonly timeoutMs?: number;
}

/** Reading and writing files on the client's machine (Node, Deno, Bun; not browsers). */
export interface LocalFiles {
  /**
   * The file's bytes in chunks; rejects like the runtime does for a missing file or a
   * directory. A chunk is valid until the next is asked for (a reader may reuse its memory).
   */
  read(path: string): AsyncIterable<Uint8Array>;
  /** Writes `chunks` to `path` (parents created, an existing file replaced). */
  write(path: string, chunks: AsyncIterable<Uint8Array>): Promise<void>;
}

export interface FileCallOptions {
  /** Cancels the call (`AbortedError`). */
  readonly signal?: AbortSignal;
}

const encoder = new TextEncoder();

export class SandboxFilesystem {
  readonly #runner: () => EffectRunner;
  readonly #sandboxId: string;

  /** @internal */
  constructor(runner: () => EffectRunner, sandboxId: string) {
    this.#runner = runner;
    this.#sandboxId = sandboxId;
  }

  /** The file's contents as UTF-8 text. */
  async readText(path: string, options: FileCallOptions = {}): Promise<string> {
    return new TextDecoder().decode(await this.readBytes(path, options));
  }

  async readBytes(path: string, options: FileCallOptions = {}): Promise<Uint8Array> {
    const runner = this.#runner();
    const { readFile } = await fileOps();
    return runner.run(readFile(this.#sandboxId, path), options.signal);
  }

  /** The file's bytes in chunks, for files too large to hold in memory. */
  readStream(
    path: string,
    options: FileCallOptions & {
      /** Start at this byte (default 0). */
      offset?: number;
    } = {},
  ): AsyncIterable<Uint8Array> {
    const runner = this.#runner();
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new InvalidError(`offset must be a byte offset, got ${offset}`);
    const sandboxId = this.#sandboxId;
    return runner.iterate(
      opsStream((ops) => ops.fileChunks(sandboxId, path, offset)),
      options.signal,
    );
  }

  /** Writes UTF-8 text (parent directories created, an existing file replaced, its mode kept). */
  async writeText(data: string, path: string, options: FileCallOptions = {}): Promise<void> {
    if (typeof data !== "string") throw new InvalidError("writeText: data must be a string");
    await this.writeBytes(encoder.encode(data), path, options);
  }

  async writeBytes(data: Uint8Array, path: string, options: FileCallOptions = {}): Promise<void> {
    if (!(data instanceof Uint8Array)) throw new InvalidError("writeBytes: data must be a Uint8Array");
    const runner = this.#runner();
    const { writeFile } = await fileOps();
    await runner.run(writeFile(this.#sandboxId, path, [data]), options.signal);
  }

  /** Writes a file from chunks as they come (e.g. a stream), with bounded memory. */
  async writeStream(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    path: string,
    options: FileCallOptions = {},
  ): Promise<void> {
    const runner = this.#runner();
    const { writeFile } = await fileOps();
    await runner.run(writeFile(this.#sandboxId, path, source), options.signal);
  }

  /** The entries of a directory, sorted by name; symlinks are described, not followed. */
  async listFiles(path: string, options: FileCallOptions = {}): Promise<FileInfo[]> {
    const runner = this.#runner();
    const { listFiles } = await fileOps();
    return runner.run(listFiles(this.#sandboxId, path), options.signal);
  }

  /** One path's metadata; a symlink is described, not followed. */
  async stat(path: string, options: FileCallOptions = {}): Promise<FileInfo> {
    const runner = this.#runner();
    const { statPath } = await fileOps();
    return runner.run(statPath(this.#sandboxId, path), options.signal);
  }

  /**
   * Creates a directory. With `createParents` (default) missing parents are created and an
   * existing directory is fine; without, the parent must exist and the path must not.
   */
  async makeDirectory(
    path: string,
    options: FileCallOptions & {
      /** Create missing parents, and accept an existing directory (default true). */
      createParents?: boolean;
    } = {},
  ): Promise<void> {
    const runner = this.#runner();
    const { makeDirectory } = await fileOps();
    await runner.run(makeDirectory(this.#sandboxId, path, options.createParents ?? true), options.signal);
  }

  /** Removes a file, a symlink, an empty directory, or (`recursive`) a directory and its contents. */
  async remove(
    path: string,
    options: FileCallOptions & {
      /** Also remove a directory's contents (default false: a non-empty directory fails). */
      recursive?: boolean;
    } = {},
  ): Promise<void> {
    const runner = this.#runner();
    const { removePath } = await fileOps();
    await runner.run(removePath(this.#sandboxId, path, options.recursive ?? false), options.signal);
  }

  /**
   * Watches a file, or the entries of a directory, for changes made by anyone (processes in
   * the sandbox included). The watch starts at once; `await watch.ready` to know it is in
   * place. Iterate it for events; it ends after `timeoutMs`, on `close()` or `break`, or when
   * the sandbox stops. A symlink is followed: paths are under the resolved target.
   */
  watch(path: string, options: WatchOptions = {}): FileWatch {
    validateAbsolutePath(path, "path");
    const filter = options.filter ?? [];
    if (!Array.isArray(filter) || filter.some((type) => !(WATCH_EVENT_TYPES as readonly string[]).includes(type))) {
      throw new InvalidError(
        `filter must list event types (${WATCH_EVENT_TYPES.join(", ")}), got ${JSON.stringify(filter)}`,
      );
    }
    const timeoutMs = options.timeoutMs === undefined ? 0 : validateDuration(options.timeoutMs, "timeoutMs");
    const runner = this.#runner();
    const sandboxId = this.#sandboxId;
    const recursive = options.recursive ?? false;
    return new FileWatch(
      (onReady, signal) =>
        runner.iterate(
          opsStream((ops) => ops.watchEvents(sandboxId, path, { recursive, filter, onReady })),
          signal,
        ),
      options.signal,
      timeoutMs,
    );
  }
}

/**
 * `sb.filesystem` in runtimes with local files (Node, Deno, Bun): everything of
 * `SandboxFilesystem`, plus copies between a local path and the sandbox. Browsers get the
 * plain `SandboxFilesystem`, whose type has no local methods at all.
 */
export class LocalSandboxFilesystem extends SandboxFilesystem {
  readonly #runner: () => EffectRunner;
  readonly #sandboxId: string;
  readonly #local: LocalFiles;

  /** @internal */
  constructor(runner: () => EffectRunner, sandboxId: string, local: LocalFiles) {
    super(runner, sandboxId);
    this.#runner = runner;
    this.#sandboxId = sandboxId;
    this.#local = local;
  }

  /** Copies a local file into the sandbox (streamed; parents created; overwrites). */
  async copyFromLocal(localPath: string, remotePath: string, options: FileCallOptions = {}): Promise<void> {
    const runner = this.#runner();
    const { writeFile } = await fileOps();
    const pieces = this.#local.read(localPath)[Symbol.asyncIterator]();
    try {
      await runner.run(
        writeFile(this.#sandboxId, remotePath, { [Symbol.asyncIterator]: () => pieces }, { piecesReused: true }),
        options.signal,
      );
    } finally {
      // Closes the local file at once when the upload failed or was aborted (a no-op after
      // its end). Not awaited: it waits for a read in flight.
      pieces.return?.()?.catch(() => {});
    }
  }

  /** Copies a sandbox file to a local path (streamed; parents created; overwrites). */
  async copyToLocal(remotePath: string, localPath: string, options: FileCallOptions = {}): Promise<void> {
    await this.#local.write(localPath, this.readStream(remotePath, options));
  }
}

/** Builds a sandbox's `filesystem` (see `ClientDefaults.localFilesystem`). */
export type FilesystemFactory = (runner: () => EffectRunner, sandboxId: string) => SandboxFilesystem;

/** `sb.filesystem` with copies between local paths and the sandbox, through `files`. */
export const localFilesystems =
  (files: LocalFiles): FilesystemFactory =>
  (runner, sandboxId) =>
    new LocalSandboxFilesystem(runner, sandboxId, files);

/** Events waiting to be read beyond this many are dropped for one "overflow" event. */
const MAX_BUFFERED_EVENTS = 10_000;

/** A live watch (see `SandboxFilesystem.watch`): an async iterable of events. */
export class FileWatch implements AsyncIterable<FileWatchEvent> {
  /** Resolves once the watch is in place (every later change is reported); rejects if it cannot start. */
  readonly ready: Promise<void>;
  readonly #stop = new AbortController();
  #buffer: FileWatchEvent[] = [];
  #done = false;
  #error: unknown;
  #wake: (() => void) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #iterating = false;

  /** @internal */
  constructor(
    open: (onReady: () => void, signal: AbortSignal) => AsyncIterable<FileWatchEvent>,
    userSignal: AbortSignal | undefined,
    timeoutMs: number,
  ) {
    let markReady!: () => void;
    let failReady!: (error: unknown) => void;
    this.ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    this.ready.catch(() => {}); // the same error also ends the iteration
    if (timeoutMs > 0) this.#timer = setTimeout(() => this.close(), timeoutMs);
    const signal = userSignal ? AbortSignal.any([userSignal, this.#stop.signal]) : this.#stop.signal;
    void (async () => {
      try {
        for await (const event of open(markReady, signal)) {
          if (this.#buffer.length >= MAX_BUFFERED_EVENTS) this.#buffer = [{ type: "overflow", paths: [] }];
          this.#buffer.push(event);
          this.#notify();
        }
      } catch (error) {
        if (!this.#stop.signal.aborted) this.#error = error;
      } finally {
        failReady(this.#error ?? new InvalidError("the watch ended before it was in place"));
        this.#finish();
      }
    })();
  }

  /** Stops the watch; iteration ends after the events already received. */
  close(): void {
    this.#stop.abort();
    this.#finish();
  }

  #finish() {
    clearTimeout(this.#timer);
    this.#done = true;
    this.#notify();
  }

  #notify() {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<FileWatchEvent> {
    if (this.#iterating) throw new InvalidError("a watch can be iterated once");
    this.#iterating = true;
    try {
      for (;;) {
        if (this.#buffer.length > 0) {
          const events = this.#buffer;
          this.#buffer = [];
          yield* events;
        } else if (this.#done) {
          if (this.#error !== undefined) throw this.#error;
          return;
        } else await new Promise<void>((resolve) => (this.#wake = resolve));
      }
    } finally {
      this.close();
    }
  }
}
