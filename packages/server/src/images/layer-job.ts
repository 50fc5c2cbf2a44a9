/**
 * One layer's job, as a layer worker runs it (layer-worker.ts): the blob's bytes checked
 * against its digest and size as they come, decompressed, bounded, checked against the diff id
 * and unpacked into a work dir. It returns only when both digests checked out; the layer store
 * renames the work dir into place then, and removes it otherwise.
 *
 * This file and what it imports run in worker threads: Node built-ins, tar-stream and the
 * store's error class only (never the engine), and only syntax Node's type stripping runs (the
 * tests start workers from the sources).
 */
import { decompressed, limited } from "./decompress.js";
import { checked, DigestCheck } from "./digest.js";
import { unpackLayer } from "./layer-unpacker.js";
import { ImageStoreError } from "./store-errors.js";

export interface LayerJob {
  /** The layer's uncompressed digest. */
  readonly diffId: string;
  /** The blob as it is stored or served (compressed or not), with its digest and size. */
  readonly blob: { readonly digest: string; readonly size?: number | undefined };
  /** The empty directory to unpack into (the layer's root). */
  readonly root: string;
  /** A directory on the same file system, outside `root`, for the unpacker's own files. */
  readonly scratch: string;
  /** The on-disk id of the image's uid/gid 0. */
  readonly idBase: number;
  /** The most uncompressed bytes the layer may have ("quota" past it). */
  readonly maxBytes: number;
  /** For messages: "layer 2 of docker.io/library/debian". */
  readonly what: string;
}

/**
 * Checks and unpacks the blob that `source` reads into `job.root`; returns the layer's size
 * (content bytes). Throws "digest-mismatch" for a blob or a layer that is not what its digest
 * says, and the unpacker's errors for a bad layer. `source` is not closed: its owner closes it.
 */
export async function unpackCheckedLayer(
  source: AsyncIterator<Uint8Array>,
  job: LayerJob,
  onUnpackedBytes?: (total: number) => void,
): Promise<{ sizeBytes: number }> {
  const { digest, size } = job.blob;
  const blobCheck = new DigestCheck(digest, `the blob ${digest} of ${job.what}`, size);
  const diffCheck = new DigestCheck(job.diffId, `the uncompressed ${job.what}`);
  const blob = checked(unclosable(source), blobCheck);
  const tar = checked(limited(decompressed(blob, job.what), job.maxBytes, job.what, onUnpackedBytes), diffCheck);
  try {
    const { sizeBytes } = await unpackLayer(tar, {
      dir: job.root,
      scratchDir: job.scratch,
      idBase: job.idBase,
      what: job.what,
    });
    // The unpacker reads its stream to the end, which checks both: never a layer without them.
    if (!blobCheck.checked || !diffCheck.checked) throw new Error(`${job.what} was unpacked unchecked`);
    return { sizeBytes };
  } catch (error) {
    // A blob that does not decompress or unpack may be one that is not what its digest
    // says (a tampered or truncated blob breaks gzip first): say that, when it is so.
    if (error instanceof ImageStoreError && error.kind === "invalid" && !blobCheck.checked) {
      await finishCheck(source, blobCheck);
    }
    throw error;
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
