/**
 * Image archives for the fake's image store: an OCI image layout or a `docker save` archive,
 * as one tar (gzip-compressed or not), read in memory into an image's config and files. The
 * archive is read and its image found by the sbx server's own code (@sbx/server-kit/images:
 * the same bounds, checks and refusals); the fake keeps the archive's files in memory, checks
 * each layer against its diff id and lays the layers out as the image's root, every name
 * confined to it. A layer compression it cannot unpack is "unsupported". Browser-safe: gzip
 * through `DecompressionStream`, digests through WebCrypto, tars read in memory (tar-reader.ts;
 * the server's tar-stream needs Node's `events`).
 */
import { concat } from "@sbx/core/adapter";
import { type ImageConfig, type ImagePlatform, ImageStoreError } from "@sbx/server-kit";
import {
  type Algorithm,
  type ArchiveEntry,
  type ArchiveFile,
  type ArchiveLimits,
  archiveName,
  digestOfBytes,
  readArchive,
  resolveArchiveImage,
} from "@sbx/server-kit/images";
import { readTar, type TarEntry, TarError } from "./tar-reader.js";

/** One path of an image's root. */
export type FakeImageFile =
  | { readonly type: "file"; readonly data: Uint8Array; readonly mode: number }
  | { readonly type: "directory"; readonly mode: number }
  | { readonly type: "symlink"; readonly target: string };

/** An image's root: absolute, normalized paths ("/usr/bin/python3") and what is there. */
export type FakeImageFiles = ReadonlyMap<string, FakeImageFile>;

export interface ArchiveImage {
  /** Canonical references the archive names the image by. */
  readonly refs: readonly string[];
  /** Digest of its manifest. */
  readonly digest: string;
  readonly configDigest: string;
  readonly config: ImageConfig;
  readonly platform: ImagePlatform;
  /** Diff ids, bottom first. */
  readonly layers: readonly string[];
  readonly files: FakeImageFiles;
}

const invalid = (message: string) => new ImageStoreError("invalid", message);

/** "a/./b/../c" → "/a/c"; undefined when it climbs above the root. */
export function confinedPath(name: string): string | undefined {
  const path = archiveName(name);
  return path === undefined ? undefined : `/${path}`;
}

const underOrAt = (path: string, dir: string) => path === dir || path.startsWith(dir === "/" ? "/" : `${dir}/`);

/** A file of the archive, in memory; its digests are taken once. */
class MemoryFile implements ArchiveFile {
  readonly #digests = new Map<Algorithm, Promise<string>>();
  constructor(readonly data: Uint8Array) {}

  get size(): number {
    return this.data.byteLength;
  }

  async bytes(): Promise<Uint8Array> {
    return this.data;
  }

  digest(algorithm: Algorithm): Promise<string> {
    let digest = this.#digests.get(algorithm);
    if (digest === undefined) {
      digest = digestOfBytes(this.data, algorithm);
      this.#digests.set(algorithm, digest);
    }
    return digest;
  }
}

/** `source`'s bytes as one array; "quota" past `max`. */
async function bytesOf(source: AsyncIterable<Uint8Array>, max: number, what: string): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  let size = 0;
  for await (const piece of source) {
    size += piece.byteLength;
    if (size > max) {
      throw new ImageStoreError("quota", `${what} unpacks to more than ${max} bytes, the store's limit for one image`);
    }
    pieces.push(piece);
  }
  return concat(pieces);
}

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

/** `data` uncompressed, as it is unpacked: gzip is; zstd and anything else are not supported. */
async function* uncompressed(data: Uint8Array, what: string): AsyncGenerator<Uint8Array> {
  if (data[0] === 0x28 && data[1] === 0xb5 && data[2] === 0x2f && data[3] === 0xfd) {
    throw new ImageStoreError("unsupported", `${what} is zstd-compressed, which the fake cannot unpack`);
  }
  if (data[0] !== 0x1f || data[1] !== 0x8b) {
    yield data;
    return;
  }
  const reader = new Blob([data as Uint8Array<ArrayBuffer>])
    .stream()
    .pipeThrough(new DecompressionStream("gzip"))
    .getReader();
  try {
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (error) {
        throw invalid(`${what} is not valid gzip: ${(error as Error).message}`);
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

function tarEntries(data: Uint8Array, what: string): TarEntry[] {
  try {
    return readTar(data);
  } catch (error) {
    if (error instanceof TarError) throw invalid(`${what}: ${error.message}`);
    throw error;
  }
}

/** The archive's entries, as the kit reads them. */
const archiveEntry = (entry: TarEntry): ArchiveEntry => ({
  name: entry.name,
  type: entry.type === "directory" ? "other" : entry.type,
  linkName: entry.linkName,
  content: once(entry.data),
});

/**
 * Applies one layer on top of `root` (the layers below it): its whiteouts remove what is
 * below, then its entries are added. Every name is confined to the root.
 */
function applyLayer(root: Map<string, FakeImageFile>, entries: readonly TarEntry[]): void {
  const own = new Map<string, FakeImageFile>();
  for (const entry of entries) {
    const path = confinedPath(entry.name);
    if (path === undefined)
      throw invalid(`a layer entry ${JSON.stringify(entry.name)} would land outside the image's root`);
    const base = path.slice(path.lastIndexOf("/") + 1);
    const dir = path.slice(0, path.lastIndexOf("/")) || "/";
    if (base === ".wh..wh..opq") {
      for (const below of [...root.keys()]) if (below !== dir && underOrAt(below, dir)) root.delete(below);
      continue;
    }
    if (base.startsWith(".wh.")) {
      const gone = `${dir === "/" ? "" : dir}/${base.slice(4)}`;
      for (const below of [...root.keys()]) if (underOrAt(below, gone)) root.delete(below);
      continue;
    }
    if (path === "/") continue;
    if (entry.type === "file") own.set(path, { type: "file", data: entry.data, mode: entry.mode || 0o644 });
    else if (entry.type === "directory") own.set(path, { type: "directory", mode: entry.mode || 0o755 });
    else if (entry.type === "symlink") own.set(path, { type: "symlink", target: entry.linkName });
    else if (entry.type === "hardlink") {
      const target = confinedPath(entry.linkName);
      const linked = target === undefined ? undefined : (own.get(target) ?? root.get(target));
      if (linked?.type !== "file") {
        throw invalid(
          `a layer's hard link ${JSON.stringify(entry.name)} points at ${JSON.stringify(entry.linkName)}, no file of the image`,
        );
      }
      own.set(path, linked);
    }
    // Devices, FIFOs and the like: an image's root has no use for them here.
  }
  for (const [path, file] of own) {
    // A file replacing a directory replaces what was under it too.
    if (file.type !== "directory") for (const below of [...root.keys()]) if (underOrAt(below, path)) root.delete(below);
    root.set(path, file);
  }
}

/**
 * Reads an archive (one tar, gzip-compressed or not: an OCI image layout or a `docker save`
 * archive) into the image it holds for `platform`. The archive, its files and each layer may
 * unpack to `limits.maxBytes`.
 */
export async function readImageArchive(
  archive: Uint8Array,
  platform: ImagePlatform,
  limits: ArchiveLimits,
): Promise<ArchiveImage> {
  const tar = await bytesOf(uncompressed(archive, "the archive"), limits.maxBytes, "the archive");
  const contents = await readArchive(
    tarEntries(tar, "the archive").map(archiveEntry),
    limits,
    async (content) => new MemoryFile(await bytesOf(content, limits.maxBytes, "the archive")),
  );
  const { resolved, refs, layers } = await resolveArchiveImage(contents, platform);
  const { config, diffIds } = resolved.config;
  const root = new Map<string, FakeImageFile>();
  for (const [i, layer] of layers.entries()) {
    const what = `layer ${i + 1}`;
    const layerTar = await bytesOf(uncompressed(layer.data, what), limits.maxBytes, what);
    if ((await digestOfBytes(layerTar)) !== diffIds[i]) {
      throw new ImageStoreError(
        "digest-mismatch",
        `${what} does not match its diff id ${diffIds[i]}: refused, nothing kept`,
      );
    }
    applyLayer(root, tarEntries(layerTar, what));
  }
  return {
    refs,
    digest: resolved.manifestDigest,
    configDigest: resolved.configDigest,
    config,
    platform: resolved.config.platform,
    layers: diffIds,
    files: root,
  };
}
