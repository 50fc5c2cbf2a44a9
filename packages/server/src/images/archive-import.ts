/**
 * Images from archives, for hosts without a registry: the archive (one tar stream, gzip- or
 * zstd-compressed or not) is spooled into the store first (a tar can hold its files in any
 * order), each file hashed on the way; then the image is found in it and every blob checked
 * against the digest that names it (`resolveArchiveImage`, shared with the fake's store: see
 * @sbx/server-kit/images). Layers are checked against their diff ids when they are unpacked.
 *
 * An archive is hostile until checked: its spooled bytes and entries are bounded, its files are
 * written under numbers (never by their names), and its links lead only to its own files.
 */
import { createHash } from "node:crypto";
import { closeSync, constants, createReadStream, openSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type Algorithm,
  type ArchiveContents,
  type ArchiveEntry,
  type ArchiveFile,
  readArchive,
} from "@sbx/server-kit/images";
import { decompressed } from "./decompress.js";
import { asStoreError } from "./store-errors.js";
import { tarEntries } from "./tar-feed.js";

/** A file of the archive, spooled: where it is, its sha256 (taken as it was written) and size. */
export class SpooledFile implements ArchiveFile {
  constructor(
    readonly path: string,
    readonly sha256: string,
    readonly size: number,
  ) {}

  bytes(): Promise<Uint8Array> {
    return readFile(this.path);
  }

  /** sha256 was taken as it was spooled; another algorithm is streamed. */
  async digest(algorithm: Algorithm): Promise<string> {
    if (algorithm === "sha256") return this.sha256;
    const hash = createHash(algorithm);
    for await (const chunk of createReadStream(this.path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
    return `${algorithm}:${hash.digest("hex")}`;
  }
}

export type SpooledArchive = ArchiveContents<SpooledFile>;

export interface SpoolLimits {
  /** The most bytes of files the archive may unpack to ("quota" past it: a gzip bomb stops there). */
  readonly maxBytes: number;
  /** The most entries it may have (default MAX_ARCHIVE_ENTRIES of @sbx/server-kit/images). */
  readonly maxEntries?: number | undefined;
}

/** Writes the archive's regular files into `dir` (numbered, never by their names), hashing each. */
export async function spoolArchive(
  archive: AsyncIterable<Uint8Array>,
  dir: string,
  limits: SpoolLimits,
): Promise<SpooledArchive> {
  let count = 0;
  try {
    return await readArchive(archiveEntries(decompressed(archive, "the archive")), limits, async (content) => {
      const path = join(dir, String(count++));
      const hash = createHash("sha256");
      const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      let size = 0;
      try {
        for await (const chunk of content) {
          hash.update(chunk);
          let offset = 0;
          while (offset < chunk.byteLength) offset += writeSync(fd, chunk, offset);
          size += chunk.byteLength;
        }
      } finally {
        closeSync(fd);
      }
      return new SpooledFile(path, `sha256:${hash.digest("hex")}`, size);
    });
  } catch (error) {
    throw asStoreError(error, "spooling the archive");
  }
}

/** tar-stream's entry types, as the kit reads them. */
const ENTRY_TYPES: Readonly<Record<string, ArchiveEntry["type"]>> = {
  file: "file",
  "contiguous-file": "file",
  symlink: "symlink",
  link: "hardlink",
};

/** The archive's tar entries, as the kit reads them. */
async function* archiveEntries(tar: AsyncIterable<Uint8Array>): AsyncGenerator<ArchiveEntry> {
  for await (const entry of tarEntries(tar, "the archive")) {
    const { name, type, linkname } = entry.header;
    yield {
      name,
      type: ENTRY_TYPES[type ?? ""] ?? "other",
      linkName: linkname ?? undefined,
      content: entry as AsyncIterable<Uint8Array>,
    };
  }
}

/** A spooled file's bytes, as a layer source. */
export async function* fileSource(path: string, onBytes?: (done: number) => void): AsyncGenerator<Uint8Array> {
  let done = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    done += (chunk as Buffer).length;
    onBytes?.(done);
    yield chunk as Buffer;
  }
}
