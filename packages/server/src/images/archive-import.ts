/**
 * Images from archives, for hosts without a registry: an OCI image layout (index.json,
 * blobs/<alg>/<hex>; what `skopeo copy … oci-archive:` and Docker 25+'s `docker save` write)
 * or a `docker save` archive of the older kind (manifest.json, <id>.json configs,
 * <id>/layer.tar layers, symlinked where layers repeat), as one tar stream (gzip-compressed
 * or not). The archive's files are spooled into the store first (a tar can hold them in any
 * order), each hashed on the way; then the image is found and every blob checked against the
 * digest that names it. Layers are checked against their diff ids when they are unpacked.
 *
 * An archive is hostile until checked: its spooled bytes and entries are bounded, and each
 * manifest, index or config in it is read and parsed once, at most {@link MAX_ARCHIVE_MANIFESTS}
 * of them (indexes naming one another, or one config named by every entry of a docker save
 * manifest, would otherwise be read again and again).
 */
import { createHash } from "node:crypto";
import { closeSync, constants, createReadStream, openSync, readFileSync, writeSync } from "node:fs";
import { join, posix } from "node:path";
import { formatImageReference, parseImageReference } from "@sbx/proto";
import type { ImagePlatform } from "@sbx/server-kit";
import { extract as tarExtract } from "tar-stream";
import { decompressed } from "./decompress.js";
import { algorithmOf, digestOf, hexOf } from "./digest.js";
import {
  checkLayersMatch,
  type Descriptor,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  MEDIA_TYPES,
  type ParsedConfig,
  parseConfig,
  parseManifestOrIndex,
  type ResolvedImage,
} from "./manifest.js";
import { formatPlatform, platformMatches } from "./platform.js";
import { asStoreError, storeError } from "./store-errors.js";
import { drainEntry as drain, feedTar, isTarFormatError, type TarEntry } from "./tar-feed.js";

/** The most entries an archive may have (a docker save of a 100-layer image has ~400). */
export const MAX_ARCHIVE_ENTRIES = 100_000;
/** The most manifests and indexes of an OCI layout, or images of a docker save, the store reads. */
export const MAX_ARCHIVE_MANIFESTS = 256;

/** Lets the event loop run between documents (each parse of up to 8 MB is synchronous). */
const breather = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A file of the archive, spooled: where it is, its sha256 and size. */
interface SpooledFile {
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
}

/** The archive's files (and its symlinks and hard links, by name). */
export class SpooledArchive {
  readonly files = new Map<string, SpooledFile>();
  readonly links = new Map<string, { target: string; symbolic: boolean }>();

  /** The file a name means, through the archive's own links (never the host's). */
  file(name: string): SpooledFile | undefined {
    let current = normalize(name);
    for (let hops = 0; current !== undefined && hops < 16; hops++) {
      const file = this.files.get(current);
      if (file !== undefined) return file;
      const link = this.links.get(current);
      if (link === undefined) return undefined;
      current = normalize(link.symbolic ? posix.join(posix.dirname(current), link.target) : link.target);
    }
    return undefined;
  }

  has(name: string): boolean {
    return this.file(name) !== undefined;
  }
}

/** A name inside the archive, without "./", leading slashes or a way out (undefined then). */
function normalize(name: string): string | undefined {
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  const out: string[] = [];
  for (const part of parts) {
    if (part === "..") {
      if (out.length === 0) return undefined;
      out.pop();
    } else out.push(part);
  }
  return out.join("/");
}

export interface SpoolLimits {
  /** The most bytes of files the archive may unpack to ("quota" past it: a gzip bomb stops there). */
  readonly maxBytes: number;
  /** The most entries it may have (default {@link MAX_ARCHIVE_ENTRIES}). */
  readonly maxEntries?: number | undefined;
}

/** Writes the archive's regular files into `dir` (numbered, never by their names), hashing each. */
export async function spoolArchive(
  archive: AsyncIterable<Uint8Array>,
  dir: string,
  limits: SpoolLimits,
): Promise<SpooledArchive> {
  const spooled = new SpooledArchive();
  const extract = tarExtract();
  const maxEntries = limits.maxEntries ?? MAX_ARCHIVE_ENTRIES;
  let count = 0;
  let entries = 0;
  let bytes = 0;
  const feeding = feedTar(decompressed(archive, "the archive"), extract);
  // Awaited once the entries are read; a source that fails before then is not an unhandled rejection.
  feeding.catch(() => {});
  try {
    for await (const entry of extract as AsyncIterable<TarEntry>) {
      if (++entries > maxEntries) {
        throw storeError("quota", `the archive has more than ${maxEntries} entries, the store's limit for one archive`);
      }
      const { header } = entry;
      const name = normalize(header.name);
      if (name === undefined || name === "") {
        await drain(entry);
        continue;
      }
      if (header.type === "file" || header.type === "contiguous-file") {
        const path = join(dir, String(count++));
        const hash = createHash("sha256");
        const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
        let size = 0;
        try {
          for await (const data of entry) {
            const chunk = data as Buffer;
            bytes += chunk.length;
            if (bytes > limits.maxBytes) {
              throw storeError(
                "quota",
                `the archive unpacks to more than ${limits.maxBytes} bytes, the store's limit for one image`,
              );
            }
            hash.update(chunk);
            let offset = 0;
            while (offset < chunk.length) offset += writeSync(fd, chunk, offset);
            size += chunk.length;
          }
        } finally {
          closeSync(fd);
        }
        spooled.links.delete(name);
        spooled.files.set(name, { path, sha256: `sha256:${hash.digest("hex")}`, size });
      } else {
        await drain(entry);
        if ((header.type === "symlink" || header.type === "link") && header.linkname) {
          spooled.files.delete(name);
          spooled.links.set(name, { target: header.linkname, symbolic: header.type === "symlink" });
        }
      }
    }
    await feeding;
    return spooled;
  } catch (error) {
    extract.destroy(undefined as unknown as Error);
    await feeding.catch(() => {});
    if (isTarFormatError(error)) {
      throw storeError("invalid", `the archive is not a valid tar: ${(error as Error).message}`, error);
    }
    throw asStoreError(error, "spooling the archive");
  }
}

/** What an archive holds: the image, the references it names, and its layers' files. */
export interface ArchiveImage {
  readonly resolved: ResolvedImage;
  readonly refs: readonly string[];
  /** The spooled file of layer `i`. */
  readonly layerFiles: readonly string[];
}

/** Finds the image in a spooled archive (for `platform`), its blobs checked. */
export async function resolveFromArchive(spooled: SpooledArchive, platform: ImagePlatform): Promise<ArchiveImage> {
  if (spooled.has("index.json")) return fromOciLayout(spooled, platform);
  if (spooled.has("manifest.json")) return fromDockerSave(spooled, platform);
  throw storeError(
    "invalid",
    "the archive is neither an OCI image layout (no index.json) nor a docker save archive (no manifest.json)",
  );
}

/** A blob of an OCI layout, checked against its descriptor. */
async function ociBlob(
  spooled: SpooledArchive,
  descriptor: Pick<Descriptor, "digest" | "size">,
  what: string,
): Promise<SpooledFile> {
  const file = spooled.file(`blobs/${algorithmOf(descriptor.digest)}/${hexOf(descriptor.digest)}`);
  if (file === undefined) throw storeError("invalid", `the archive lacks ${what} (blob ${descriptor.digest})`);
  if (file.size !== descriptor.size || (await digestOfFile(file, descriptor.digest)) !== descriptor.digest) {
    throw storeError("digest-mismatch", `${what} in the archive does not match its digest ${descriptor.digest}`);
  }
  return file;
}

/** The file's digest in the algorithm of `like` (sha256 was taken as it was spooled; others are streamed). */
async function digestOfFile(file: SpooledFile, like: string): Promise<string> {
  const algorithm = algorithmOf(like);
  if (algorithm === "sha256") return file.sha256;
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file.path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return `${algorithm}:${hash.digest("hex")}`;
}

function readSmall(file: SpooledFile, max: number, what: string): Buffer {
  if (file.size > max) throw storeError("invalid", `${what} is ${file.size} bytes, over ${max}`);
  return readFileSync(file.path);
}

async function fromOciLayout(spooled: SpooledArchive, platform: ImagePlatform): Promise<ArchiveImage> {
  const indexFile = spooled.file("index.json") as SpooledFile;
  const index = parseManifestOrIndex(
    readSmall(indexFile, MAX_MANIFEST_BYTES, "index.json"),
    "the archive's index.json",
  );
  if (index.kind !== "index") throw storeError("invalid", "the archive's index.json is not an image index");
  // Every image manifest the index leads to (through nested indexes), skipping other platforms;
  // each one once (by the first way to it), and no more than the store reads.
  const found: { descriptor: Descriptor; top: Descriptor; digests: string[] }[] = [];
  const seen = new Set<string>();
  const visit = async (
    manifests: readonly Descriptor[],
    top: Descriptor | undefined,
    digests: string[],
    depth: number,
  ): Promise<void> => {
    for (const descriptor of manifests) {
      if (descriptor.platform !== undefined && !platformMatches(descriptor.platform, platform)) continue;
      if (seen.has(descriptor.digest)) continue;
      seen.add(descriptor.digest);
      if (seen.size > MAX_ARCHIVE_MANIFESTS) {
        throw storeError(
          "invalid",
          `the archive's index.json leads to more than ${MAX_ARCHIVE_MANIFESTS} manifests and indexes`,
        );
      }
      const what = `the manifest ${descriptor.digest}`;
      const file = await ociBlob(spooled, descriptor, what);
      const doc = parseManifestOrIndex(readSmall(file, MAX_MANIFEST_BYTES, what), what, descriptor.mediaType);
      await breather();
      if (doc.kind === "index") {
        if (depth < 3) await visit(doc.manifests, top ?? descriptor, [...digests, descriptor.digest], depth + 1);
      } else {
        found.push({ descriptor, top: top ?? descriptor, digests: [...digests, descriptor.digest] });
      }
    }
  };
  await visit(index.manifests, undefined, [], 0);
  const candidates = found.length > 1 ? found.filter((f) => f.descriptor.platform !== undefined) : found;
  if (candidates.length === 0) {
    throw storeError("unsupported", `the archive holds no image for ${formatPlatform(platform)}`);
  }
  if (candidates.length > 1) {
    throw storeError(
      "invalid",
      `the archive holds ${candidates.length} images for this platform: import one at a time`,
    );
  }
  const { descriptor, top, digests } = candidates[0] as (typeof candidates)[number];
  const what = `the manifest ${descriptor.digest}`;
  const manifest = parseManifestOrIndex(
    readSmall(await ociBlob(spooled, descriptor, what), MAX_MANIFEST_BYTES, what),
    what,
  );
  if (manifest.kind !== "manifest") throw storeError("invalid", `${what} is not an image manifest`);
  const configWhat = `the config ${manifest.config.digest}`;
  const configFile = await ociBlob(spooled, manifest.config, configWhat);
  const config = parseConfig(readSmall(configFile, MAX_CONFIG_BYTES, configWhat), configWhat);
  checkLayersMatch(manifest, config, what);
  checkPlatform(config.platform, platform);
  const layerFiles: string[] = [];
  for (const [i, layer] of manifest.layers.entries()) {
    layerFiles.push((await ociBlob(spooled, layer, `layer ${i} (${layer.digest})`)).path);
  }
  const names = [top.annotations?.["io.containerd.image.name"], top.annotations?.["org.opencontainers.image.ref.name"]];
  return {
    resolved: {
      manifestDigest: descriptor.digest,
      digests,
      configDigest: manifest.config.digest,
      config,
      layers: manifest.layers,
    },
    // A bare tag ("latest") as the ref name names no repository: only full names are kept.
    refs: canonicalRefs(names.filter((n): n is string => n?.includes("/") === true)),
    layerFiles,
  };
}

interface DockerSaveEntry {
  readonly Config?: unknown;
  readonly RepoTags?: unknown;
  readonly Layers?: unknown;
}

async function fromDockerSave(spooled: SpooledArchive, platform: ImagePlatform): Promise<ArchiveImage> {
  const manifestFile = spooled.file("manifest.json") as SpooledFile;
  let entries: unknown;
  try {
    entries = JSON.parse(readSmall(manifestFile, MAX_MANIFEST_BYTES, "manifest.json").toString("utf8"));
  } catch (error) {
    throw storeError("invalid", "the archive's manifest.json is not valid JSON", error);
  }
  if (!Array.isArray(entries) || entries.length === 0) {
    throw storeError("invalid", "the archive's manifest.json lists no image");
  }
  if (entries.length > MAX_ARCHIVE_MANIFESTS) {
    throw storeError("invalid", `the archive's manifest.json lists more than ${MAX_ARCHIVE_MANIFESTS} images`);
  }
  const configs = new Map<string, ParsedConfig>();
  const images: { entry: DockerSaveEntry; configFile: SpooledFile; config: ParsedConfig; layers: string[] }[] = [];
  for (const [i, entry] of (entries as DockerSaveEntry[]).entries()) {
    const what = `image ${i} of the archive's manifest.json`;
    if (
      typeof entry !== "object" ||
      entry === null ||
      typeof entry.Config !== "string" ||
      !Array.isArray(entry.Layers) ||
      !entry.Layers.every((l) => typeof l === "string")
    ) {
      throw storeError("invalid", `${what} lacks Config or Layers`);
    }
    const configFile = spooled.file(entry.Config);
    if (configFile === undefined)
      throw storeError("invalid", `the archive lacks ${entry.Config}, the config of ${what}`);
    // docker save names a config by its digest ("<hex>.json", or "blobs/sha256/<hex>"): check it.
    const named = /(?:^|\/)([a-f0-9]{64})(?:\.json)?$/.exec(entry.Config)?.[1];
    if (named !== undefined && configFile.sha256 !== `sha256:${named}`) {
      throw storeError("digest-mismatch", `the config ${entry.Config} in the archive does not match its digest`);
    }
    let config = configs.get(configFile.path);
    if (config === undefined) {
      config = parseConfig(readSmall(configFile, MAX_CONFIG_BYTES, entry.Config), `the config ${entry.Config}`);
      configs.set(configFile.path, config);
      await breather();
    }
    images.push({ entry, configFile, config, layers: entry.Layers as string[] });
  }
  const forPlatform = images.filter((image) => platformMatches(image.config.platform, platform));
  if (forPlatform.length === 0) {
    const first = images[0] as (typeof images)[number];
    checkPlatform(first.config.platform, platform);
  }
  if (forPlatform.length > 1) {
    throw storeError(
      "invalid",
      `the archive holds ${forPlatform.length} images for this platform: import one at a time`,
    );
  }
  const { entry, configFile, config, layers } = forPlatform[0] as (typeof images)[number];
  const layerFiles = layers.map((name) => {
    const file = spooled.file(name);
    if (file === undefined) throw storeError("invalid", `the archive lacks the layer ${name}`);
    return file;
  });
  const descriptors: Descriptor[] = layerFiles.map((file) => ({
    mediaType: "application/vnd.oci.image.layer.v1.tar",
    digest: file.sha256,
    size: file.size,
  }));
  if (descriptors.length !== config.diffIds.length) {
    throw storeError(
      "invalid",
      `the archive's image has ${descriptors.length} layers but its config lists ${config.diffIds.length} diff ids`,
    );
  }
  // docker save has no manifest: the image's digest is that of the OCI manifest that describes it.
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: MEDIA_TYPES.ociConfig, digest: configFile.sha256, size: configFile.size },
    layers: descriptors,
  };
  const manifestDigest = digestOf(Buffer.from(JSON.stringify(manifest)));
  const repoTags = Array.isArray(entry.RepoTags)
    ? entry.RepoTags.filter((t): t is string => typeof t === "string")
    : [];
  return {
    resolved: {
      manifestDigest,
      digests: [manifestDigest],
      configDigest: configFile.sha256,
      config,
      layers: descriptors,
    },
    refs: canonicalRefs(repoTags),
    layerFiles: layerFiles.map((f) => f.path),
  };
}

function checkPlatform(image: ImagePlatform, host: ImagePlatform): void {
  if (!platformMatches(image, host)) {
    throw storeError(
      "unsupported",
      `the archive's image is for ${formatPlatform(image)}, not for this host (${formatPlatform(host)})`,
    );
  }
}

/** The canonical forms of the names that parse as references ("busybox:1" → "docker.io/library/busybox:1"). */
function canonicalRefs(names: readonly string[]): string[] {
  const refs = new Set<string>();
  for (const name of names) {
    try {
      refs.add(formatImageReference(parseImageReference(name)));
    } catch {
      // not a reference: not kept
    }
  }
  return [...refs];
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
