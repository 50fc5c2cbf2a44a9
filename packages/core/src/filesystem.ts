/**
 * `sb.filesystem`: files inside a sandbox (Modal's `filesystem` namespace). Every path is
 * absolute and resolves inside the sandbox. Large files stream in chunks both ways, so memory
 * stays bounded; reads resume after a dropped connection, writes resend one chunk at most,
 * and a written file appears all at once (written beside it, then renamed into place).
 */
import type { ClientRuntime } from "./client-runtime.js";
import { InvalidError } from "./errors.js";
import {
  type FileInfo,
  fileChunks,
  listFiles,
  makeDirectory,
  readFile,
  removePath,
  statPath,
  writeFile,
} from "./filesystem-ops.js";

export type { FileInfo };

/** Reading and writing files on the client's machine (Node, Deno, Bun; not browsers). */
export interface LocalFiles {
  /** The file's bytes in chunks; rejects like the runtime does for a missing file or a directory. */
  read(path: string): AsyncIterable<Uint8Array>;
  /** Writes `chunks` to `path` (parents created, an existing file replaced). */
  write(path: string, chunks: AsyncIterable<Uint8Array>): Promise<void>;
}

export interface FileCallOptions {
  readonly signal?: AbortSignal;
}

const encoder = new TextEncoder();

export class SandboxFilesystem {
  readonly #runtime: () => ClientRuntime;
  readonly #sandboxId: string;

  /** @internal */
  constructor(runtime: () => ClientRuntime, sandboxId: string) {
    this.#runtime = runtime;
    this.#sandboxId = sandboxId;
  }

  /** The file's contents as UTF-8 text. */
  async readText(path: string, options: FileCallOptions = {}): Promise<string> {
    return new TextDecoder().decode(await this.readBytes(path, options));
  }

  async readBytes(path: string, options: FileCallOptions = {}): Promise<Uint8Array> {
    return this.#runtime().run(readFile(this.#sandboxId, path), options.signal);
  }

  /** The file's bytes in chunks, for files too large to hold in memory. */
  readStream(path: string, options: FileCallOptions & { offset?: number } = {}): AsyncIterable<Uint8Array> {
    const runtime = this.#runtime();
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new InvalidError(`offset must be a byte offset, got ${offset}`);
    return runtime.iterate(fileChunks(this.#sandboxId, path, offset), options.signal);
  }

  /** Writes UTF-8 text (parent directories created, an existing file replaced, its mode kept). */
  async writeText(data: string, path: string, options: FileCallOptions = {}): Promise<void> {
    if (typeof data !== "string") throw new InvalidError("writeText: data must be a string");
    await this.writeBytes(encoder.encode(data), path, options);
  }

  async writeBytes(data: Uint8Array, path: string, options: FileCallOptions = {}): Promise<void> {
    if (!(data instanceof Uint8Array)) throw new InvalidError("writeBytes: data must be a Uint8Array");
    await this.#runtime().run(writeFile(this.#sandboxId, path, [data]), options.signal);
  }

  /** Writes a file from chunks as they come (e.g. a stream), with bounded memory. */
  async writeStream(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    path: string,
    options: FileCallOptions = {},
  ): Promise<void> {
    await this.#runtime().run(writeFile(this.#sandboxId, path, source), options.signal);
  }

  /** The entries of a directory, sorted by name; symlinks are described, not followed. */
  async listFiles(path: string, options: FileCallOptions = {}): Promise<FileInfo[]> {
    return this.#runtime().run(listFiles(this.#sandboxId, path), options.signal);
  }

  /** One path's metadata; a symlink is described, not followed. */
  async stat(path: string, options: FileCallOptions = {}): Promise<FileInfo> {
    return this.#runtime().run(statPath(this.#sandboxId, path), options.signal);
  }

  /**
   * Creates a directory. With `createParents` (default) missing parents are created and an
   * existing directory is fine; without, the parent must exist and the path must not.
   */
  async makeDirectory(path: string, options: FileCallOptions & { createParents?: boolean } = {}): Promise<void> {
    await this.#runtime().run(makeDirectory(this.#sandboxId, path, options.createParents ?? true), options.signal);
  }

  /** Removes a file, a symlink, an empty directory, or (`recursive`) a directory and its contents. */
  async remove(path: string, options: FileCallOptions & { recursive?: boolean } = {}): Promise<void> {
    await this.#runtime().run(removePath(this.#sandboxId, path, options.recursive ?? false), options.signal);
  }

  /** Copies a local file into the sandbox (streamed; parents created; overwrites). Node, Deno, Bun. */
  async copyFromLocal(localPath: string, remotePath: string, options: FileCallOptions = {}): Promise<void> {
    const local = this.#localFiles();
    await this.#runtime().run(writeFile(this.#sandboxId, remotePath, local.read(localPath)), options.signal);
  }

  /** Copies a sandbox file to a local path (streamed; parents created; overwrites). Node, Deno, Bun. */
  async copyToLocal(remotePath: string, localPath: string, options: FileCallOptions = {}): Promise<void> {
    const local = this.#localFiles();
    await local.write(localPath, this.readStream(remotePath, options));
  }

  #localFiles(): LocalFiles {
    const local = this.#runtime().localFiles;
    if (!local) throw new InvalidError("local files are not available in this runtime (use readBytes / writeBytes)");
    return local;
  }
}
