/**
 * The layer store on disk: each layer unpacked once, into a directory named by its diff id
 * (the digest of its uncompressed tar), shared by every image that has it. A layer is
 * unpacked into a temporary directory (by a layer worker, off the event loop) and renamed into
 * place only when its blob's digest and its diff id both checked out; anything that fails
 * leaves nothing behind.
 *
 * Durability: a layer is renamed into place whole or not at all, and the temporary dir is
 * emptied at open, so a crashed server never uses a half layer. No file is fsynced: the store
 * syncs its file system a little later, and drops the layers a power cut caught before that
 * (disk-sync.ts).
 *
 * A job whose worker stopped while other jobs ran in it (one of them reached the worker's heap
 * limit, say) is run again from the start, alone in a worker of its own: a layer fails only
 * for its own fault. Its source is opened anew for that (a download replays what it has kept).
 */
import { randomUUID } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { isDigest } from "./digest.js";
import { DEFAULT_WORKER_HEAP_MIB, LayerWorkers, WorkerStopped } from "./layer-workers.js";
import { asStoreError, storeError } from "./store-errors.js";

/** One reading of a layer's blob, from its first byte. */
export interface LayerBytes {
  readonly source: AsyncIterable<Uint8Array>;
  /** Ends a read of `source` under way (aborts its download), when the unpack failed first. */
  readonly stop?: (() => void) | undefined;
}

export interface AddLayer {
  /** The layer's uncompressed digest (its name in the store). */
  readonly diffId: string;
  /** Opens the blob as it is stored or served (compressed or not); again when the job is run again. */
  readonly open: () => LayerBytes;
  /** The blob's digest and size. */
  readonly blob: { readonly digest: string; readonly size?: number | undefined };
  /** The most uncompressed bytes the layer may have ("quota" past it). */
  readonly maxBytes: number;
  /** For messages: "layer sha256:… of docker.io/library/debian". */
  readonly what: string;
  /** Uncompressed bytes so far (from 0 again when the job is run again). */
  readonly onUnpackedBytes?: ((total: number) => void) | undefined;
}

export class LayerStore {
  readonly #layers: string;
  readonly #tmp: string;
  readonly #idBase: number;
  /** Each layer dir's token (see `token`), by diff id: made when first asked for, dropped with the dir. */
  readonly #tokens = new Map<string, string>();
  readonly #workers: LayerWorkers;
  readonly #workerHeapMiB: number;

  /**
   * `layersDir` holds the layers; `tmpDir` (same file system) their makings; `workers`: at most
   * that many threads, each with a heap of at most `workerHeapMiB`.
   */
  constructor(layersDir: string, tmpDir: string, idBase: number, workers: number, workerHeapMiB?: number) {
    this.#layers = layersDir;
    this.#tmp = tmpDir;
    this.#idBase = idBase;
    this.#workerHeapMiB = workerHeapMiB ?? DEFAULT_WORKER_HEAP_MIB;
    this.#workers = new LayerWorkers(workers, this.#workerHeapMiB);
    mkdirSync(layersDir, { recursive: true, mode: 0o700 });
  }

  /** Where the layer `diffId` is (or would be) unpacked: a root-owned store path, fit for an overlay lowerdir. */
  dir(diffId: string): string {
    if (!isDigest(diffId)) throw new Error(`not a diff id: ${JSON.stringify(diffId)}`);
    return join(this.#layers, diffId.replace(":", "-"));
  }

  has(diffId: string): boolean {
    return existsSync(this.dir(diffId));
  }

  /**
   * A random token that names the layer's dir as it is now (undefined while it has none): the
   * same until the store removes the dir, never again after (a dir made anew gets another,
   * whatever inode number the file system gives it). Kept for as long as this store is open.
   */
  token(diffId: string): string | undefined {
    if (!this.has(diffId)) return undefined;
    let token = this.#tokens.get(diffId);
    if (token === undefined) {
      token = randomUUID();
      this.#tokens.set(diffId, token);
    }
    return token;
  }

  /** The diff ids of the layers on disk. */
  onDisk(): string[] {
    return readdirSync(this.#layers)
      .map((name) => name.replace("-", ":"))
      .filter(isDigest);
  }

  /** Starts a layer worker, if none runs, ahead of a pull's first layer. */
  warm(): void {
    this.#workers.warm();
  }

  /** Unpacks a layer into the store; returns its size (content bytes). */
  async add(layer: AddLayer): Promise<{ sizeBytes: number }> {
    try {
      try {
        return await this.#attempt(layer, false);
      } catch (error) {
        // Its worker stopped while it ran other jobs too: maybe for another's fault.
        if (!(error instanceof WorkerStopped && error.shared && !error.closing)) throw error;
        return await this.#attempt(layer, true);
      }
    } catch (error) {
      if (error instanceof WorkerStopped && error.outOfMemory && !error.closing) {
        throw storeError(
          "quota",
          `${layer.what} needs more memory to unpack than the ${this.#workerHeapMiB} MiB a layer worker may have`,
          error,
        );
      }
      throw asStoreError(error, `unpacking ${layer.what}`);
    }
  }

  /** One run of a layer's job, its blob read from the start (`alone`: in a worker of its own). */
  async #attempt(layer: AddLayer, alone: boolean): Promise<{ sizeBytes: number }> {
    const work = mkdtempSync(join(this.#tmp, "layer-"));
    let bytes: LayerBytes | undefined;
    let source: AsyncIterator<Uint8Array> | undefined;
    try {
      const root = join(work, "root");
      const scratch = join(work, "scratch");
      mkdirSync(root, { mode: 0o755 });
      mkdirSync(scratch, { mode: 0o700 });
      // The root's owner and mode until the tar's own "./" entry says otherwise: the image's root.
      chownSync(root, this.#idBase, this.#idBase);
      chmodSync(root, 0o755);
      bytes = layer.open();
      source = bytes.source[Symbol.asyncIterator]();
      const { diffId, blob, maxBytes, what } = layer;
      const { sizeBytes } = await this.#workers.run(
        { diffId, blob, root, scratch, idBase: this.#idBase, maxBytes, what },
        source,
        { onUnpackedBytes: layer.onUnpackedBytes, stopSource: bytes.stop, alone },
      );
      if (!this.has(layer.diffId)) {
        this.#tokens.delete(layer.diffId);
        renameSync(root, this.dir(layer.diffId));
      }
      return { sizeBytes };
    } finally {
      // The work dir goes whatever closing the source says (a download that breaks off or
      // finds the disk full while it closes must not leave a half-unpacked layer behind).
      // The job is over here: its worker writes there no more.
      try {
        await source?.return?.();
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    }
  }

  /** Stops the layer workers (jobs under way fail). */
  close(): void {
    this.#workers.close();
  }

  remove(diffId: string): void {
    this.#tokens.delete(diffId);
    rmSync(this.dir(diffId), { recursive: true, force: true });
  }
}
