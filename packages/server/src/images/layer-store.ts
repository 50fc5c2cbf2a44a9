/**
 * The layer store on disk: each layer unpacked once, into a directory named by its diff id
 * (the digest of its uncompressed tar), shared by every image that has it. A layer is
 * unpacked into a temporary directory and renamed into place only when its blob's digest and
 * its diff id both checked out; anything that fails leaves nothing behind.
 */
import { randomUUID } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { decompressed, limited } from "./decompress.js";
import { checked, DigestCheck, isDigest } from "./digest.js";
import { unpackLayer } from "./layer-unpacker.js";
import { asStoreError, ImageStoreError } from "./store-errors.js";

export interface AddLayer {
  /** The layer's uncompressed digest (its name in the store). */
  readonly diffId: string;
  /** The blob as it is stored or served (compressed or not), with its digest and size. */
  readonly source: AsyncIterable<Uint8Array>;
  readonly blob: { readonly digest: string; readonly size?: number | undefined };
  /** The most uncompressed bytes the layer may have ("quota" past it). */
  readonly maxBytes: number;
  /** For messages: "layer sha256:… of docker.io/library/debian". */
  readonly what: string;
  /** Uncompressed bytes so far. */
  readonly onUnpackedBytes?: ((total: number) => void) | undefined;
}

export class LayerStore {
  readonly #layers: string;
  readonly #tmp: string;
  readonly #idBase: number;
  /** Each layer dir's token (see `token`), by diff id: made when first asked for, dropped with the dir. */
  readonly #tokens = new Map<string, string>();

  /** `layersDir` holds the layers; `tmpDir` (same file system) their makings. */
  constructor(layersDir: string, tmpDir: string, idBase: number) {
    this.#layers = layersDir;
    this.#tmp = tmpDir;
    this.#idBase = idBase;
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

  /** Unpacks a layer into the store; returns its size (content bytes). */
  async add(layer: AddLayer): Promise<{ sizeBytes: number }> {
    const work = mkdtempSync(join(this.#tmp, "layer-"));
    const source = layer.source[Symbol.asyncIterator]();
    try {
      const root = join(work, "root");
      const scratch = join(work, "scratch");
      mkdirSync(root, { mode: 0o755 });
      mkdirSync(scratch, { mode: 0o700 });
      // The root's owner and mode until the tar's own "./" entry says otherwise: the image's root.
      chownSync(root, this.#idBase, this.#idBase);
      chmodSync(root, 0o755);
      const { digest, size } = layer.blob;
      const blobCheck = new DigestCheck(digest, `the blob ${digest} of ${layer.what}`, size);
      const diffCheck = new DigestCheck(layer.diffId, `the uncompressed ${layer.what}`);
      const blob = checked(unclosable(source), blobCheck);
      const tar = checked(
        limited(decompressed(blob, layer.what), layer.maxBytes, layer.what, layer.onUnpackedBytes),
        diffCheck,
      );
      try {
        const options = { dir: root, scratchDir: scratch, idBase: this.#idBase, what: layer.what };
        const { sizeBytes } = await unpackLayer(tar, options);
        if (!this.has(layer.diffId)) {
          this.#tokens.delete(layer.diffId);
          renameSync(root, this.dir(layer.diffId));
        }
        return { sizeBytes };
      } catch (error) {
        // A blob that does not decompress or unpack may be one that is not what its digest
        // says (a tampered or truncated blob breaks gzip first): say that, when it is so.
        if (error instanceof ImageStoreError && error.kind === "invalid" && !blobCheck.checked) {
          await finishCheck(source, blobCheck);
        }
        throw error;
      }
    } catch (error) {
      throw asStoreError(error, `unpacking ${layer.what}`);
    } finally {
      // The work dir goes whatever closing the source says (a download that breaks off or
      // finds the disk full while it closes must not leave a half-unpacked layer behind).
      try {
        await source.return?.();
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    }
  }

  remove(diffId: string): void {
    this.#tokens.delete(diffId);
    rmSync(this.dir(diffId), { recursive: true, force: true });
  }
}

/** `iterator` as an iterable whose consumers cannot close it (its owner reads on, or closes it). */
function unclosable(iterator: AsyncIterator<Uint8Array>): AsyncIterable<Uint8Array> {
  return { [Symbol.asyncIterator]: () => ({ next: () => iterator.next() }) };
}

/** Reads the rest of `source` into `check` and checks it: throws "digest-mismatch" if so. */
async function finishCheck(source: AsyncIterator<Uint8Array>, check: DigestCheck): Promise<void> {
  try {
    for (let next = await source.next(); !next.done; next = await source.next()) check.update(next.value);
  } catch (error) {
    if (error instanceof ImageStoreError && error.kind === "digest-mismatch") throw error;
    return; // cannot tell (the download broke off): the first error stands
  }
  check.check();
}
