/**
 * An image archive's contents (one tar: an OCI image layout or a `docker save` archive) by
 * name: its regular files, kept where the store reading it keeps them (the server spools them
 * to disk, the fake holds them in memory), and its symlinks and hard links. An archive is
 * hostile until checked: its entries and the bytes of its files are bounded while it is read,
 * a name is only ever looked up (never used as a path), and a link leads only to the archive's
 * own files. The tar itself is parsed by each store (the server streams it through
 * tar-stream, which needs Node's `events`; the fake, browser-safe, reads it in memory).
 */
import { imageStoreError } from "../engine/image-store.js";
import type { Algorithm } from "./digest.js";

/** The most entries an archive may have (a docker save of a 100-layer image has ~400). */
export const MAX_ARCHIVE_ENTRIES = 100_000;

/** A regular file of an archive, as the store reading it keeps it. */
export interface ArchiveFile {
  readonly size: number;
  /** Its bytes (what is read whole is a small document, its size checked first). */
  bytes(): Promise<Uint8Array>;
  /** Its digest in `algorithm`. */
  digest(algorithm: Algorithm): Promise<string>;
}

/** A name inside the archive, without "./", leading slashes or a way out (undefined then). */
export function archiveName(name: string): string | undefined {
  const out: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) return undefined;
      out.pop();
    } else out.push(part);
  }
  return out.join("/");
}

/** The archive's files (and its symlinks and hard links), by name. */
export class ArchiveContents<F extends ArchiveFile> {
  readonly #files = new Map<string, F>();
  readonly #links = new Map<string, { target: string; symbolic: boolean }>();

  /** `name` is the file `file` (a later entry of one name replaces an earlier one). */
  addFile(name: string, file: F): void {
    this.#links.delete(name);
    this.#files.set(name, file);
  }

  /** `name` links to `target` (relative to its directory when symbolic, to the archive's root when not). */
  addLink(name: string, target: string, symbolic: boolean): void {
    this.#files.delete(name);
    this.#links.set(name, { target, symbolic });
  }

  /** The file a name means, through the archive's own links (never the host's). */
  file(name: string): F | undefined {
    let current = archiveName(name);
    for (let hops = 0; current !== undefined && hops < 16; hops++) {
      const file = this.#files.get(current);
      if (file !== undefined) return file;
      const link = this.#links.get(current);
      if (link === undefined) return undefined;
      const dir = current.includes("/") ? current.slice(0, current.lastIndexOf("/")) : "";
      current = archiveName(link.symbolic && dir !== "" ? `${dir}/${link.target}` : link.target);
    }
    return undefined;
  }

  has(name: string): boolean {
    return this.file(name) !== undefined;
  }
}

/** One entry of the archive's tar, as the store's tar parser gives it. */
export interface ArchiveEntry {
  /** The name as the archive spells it. */
  readonly name: string;
  readonly type: "file" | "symlink" | "hardlink" | "other";
  /** A link's target. */
  readonly linkName?: string | undefined;
  /** A file's content (skipped by the parser when it is not read). */
  readonly content: AsyncIterable<Uint8Array>;
}

export interface ArchiveLimits {
  /** The most bytes of files the archive may unpack to ("quota" past it: a gzip bomb stops there). */
  readonly maxBytes: number;
  /** The most entries it may have (default {@link MAX_ARCHIVE_ENTRIES}). */
  readonly maxEntries?: number | undefined;
}

/**
 * Reads the archive's entries: each regular file's content goes to `keep`, which keeps it
 * (never by its name) and answers how it is kept; links are noted. Past a limit it is "quota".
 */
export async function readArchive<F extends ArchiveFile>(
  entries: AsyncIterable<ArchiveEntry> | Iterable<ArchiveEntry>,
  limits: ArchiveLimits,
  keep: (content: AsyncIterable<Uint8Array>) => Promise<F>,
): Promise<ArchiveContents<F>> {
  const contents = new ArchiveContents<F>();
  const maxEntries = limits.maxEntries ?? MAX_ARCHIVE_ENTRIES;
  let count = 0;
  let bytes = 0;
  async function* bounded(content: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of content) {
      bytes += chunk.byteLength;
      if (bytes > limits.maxBytes) {
        throw imageStoreError(
          "quota",
          `the archive unpacks to more than ${limits.maxBytes} bytes, the store's limit for one image`,
        );
      }
      yield chunk;
    }
  }
  for await (const entry of entries) {
    if (++count > maxEntries) {
      throw imageStoreError(
        "quota",
        `the archive has more than ${maxEntries} entries, the store's limit for one archive`,
      );
    }
    const name = archiveName(entry.name);
    if (name === undefined || name === "") continue;
    if (entry.type === "file") contents.addFile(name, await keep(bounded(entry.content)));
    else if ((entry.type === "symlink" || entry.type === "hardlink") && entry.linkName) {
      contents.addLink(name, entry.linkName, entry.type === "symlink");
    }
  }
  return contents;
}
