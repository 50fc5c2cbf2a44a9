/**
 * The image in an archive's contents (see archive-contents.ts): an OCI image layout (index.json,
 * blobs/<alg>/<hex>; what `skopeo copy … oci-archive:` and Docker 25+'s `docker save` write) or
 * a `docker save` archive of the older kind (manifest.json, <id>.json configs, <id>/layer.tar
 * layers, symlinked where layers repeat). The image is found for a platform and every blob it
 * names is checked against the digest that names it; layers are left to be checked against
 * their diff ids when they are unpacked.
 *
 * Each manifest, index or config of the archive is read and parsed once, at most
 * {@link MAX_ARCHIVE_MANIFESTS} of them (indexes naming one another, or one config named by
 * every entry of a docker save manifest, would otherwise be read again and again).
 */
import { formatImageReference, parseImageReference } from "@sbx/proto";
import { type ImagePlatform, imageStoreError } from "../engine/image-store.js";
import type { ArchiveContents, ArchiveFile } from "./archive-contents.js";
import { algorithmOf, digestOfBytes, hexOf } from "./digest.js";
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

/** The most manifests and indexes of an OCI layout, or images of a docker save, that are read. */
export const MAX_ARCHIVE_MANIFESTS = 256;

/** What an archive holds: the image, the references it names, and its layers' files. */
export interface ArchiveImage<F extends ArchiveFile> {
  readonly resolved: ResolvedImage;
  readonly refs: readonly string[];
  /** The file of each layer, bottom first (paired with `resolved.layers`). */
  readonly layers: readonly F[];
}

/** Lets the event loop run between documents (each parse of up to 8 MB is synchronous). */
const breather = () =>
  new Promise<void>((resolve) => (typeof setImmediate === "function" ? setImmediate(resolve) : setTimeout(resolve, 0)));

/** Finds the image in an archive's contents (for `platform`), its blobs checked. */
export async function resolveArchiveImage<F extends ArchiveFile>(
  contents: ArchiveContents<F>,
  platform: ImagePlatform,
): Promise<ArchiveImage<F>> {
  if (contents.has("index.json")) return fromOciLayout(contents, platform);
  if (contents.has("manifest.json")) return fromDockerSave(contents, platform);
  throw imageStoreError(
    "invalid",
    "the archive is neither an OCI image layout (no index.json) nor a docker save archive (no manifest.json)",
  );
}

/** A blob of an OCI layout, checked against its descriptor. */
async function ociBlob<F extends ArchiveFile>(
  contents: ArchiveContents<F>,
  descriptor: Pick<Descriptor, "digest" | "size">,
  what: string,
): Promise<F> {
  const file = contents.file(`blobs/${algorithmOf(descriptor.digest)}/${hexOf(descriptor.digest)}`);
  if (file === undefined) throw imageStoreError("invalid", `the archive lacks ${what} (blob ${descriptor.digest})`);
  if (file.size !== descriptor.size || (await file.digest(algorithmOf(descriptor.digest))) !== descriptor.digest) {
    throw imageStoreError("digest-mismatch", `${what} in the archive does not match its digest ${descriptor.digest}`);
  }
  return file;
}

async function readSmall(file: ArchiveFile, max: number, what: string): Promise<Uint8Array> {
  if (file.size > max) throw imageStoreError("invalid", `${what} is ${file.size} bytes, over ${max}`);
  return file.bytes();
}

async function fromOciLayout<F extends ArchiveFile>(
  contents: ArchiveContents<F>,
  platform: ImagePlatform,
): Promise<ArchiveImage<F>> {
  const indexFile = contents.file("index.json") as F;
  const index = parseManifestOrIndex(
    await readSmall(indexFile, MAX_MANIFEST_BYTES, "index.json"),
    "the archive's index.json",
  );
  if (index.kind !== "index") throw imageStoreError("invalid", "the archive's index.json is not an image index");
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
        throw imageStoreError(
          "invalid",
          `the archive's index.json leads to more than ${MAX_ARCHIVE_MANIFESTS} manifests and indexes`,
        );
      }
      const what = `the manifest ${descriptor.digest}`;
      const file = await ociBlob(contents, descriptor, what);
      const doc = parseManifestOrIndex(await readSmall(file, MAX_MANIFEST_BYTES, what), what, descriptor.mediaType);
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
    throw imageStoreError("unsupported", `the archive holds no image for ${formatPlatform(platform)}`);
  }
  if (candidates.length > 1) {
    throw imageStoreError(
      "invalid",
      `the archive holds ${candidates.length} images for this platform: import one at a time`,
    );
  }
  const { descriptor, top, digests } = candidates[0] as (typeof candidates)[number];
  const what = `the manifest ${descriptor.digest}`;
  const manifest = parseManifestOrIndex(
    await readSmall(await ociBlob(contents, descriptor, what), MAX_MANIFEST_BYTES, what),
    what,
  );
  if (manifest.kind !== "manifest") throw imageStoreError("invalid", `${what} is not an image manifest`);
  const configWhat = `the config ${manifest.config.digest}`;
  const configFile = await ociBlob(contents, manifest.config, configWhat);
  const config = parseConfig(await readSmall(configFile, MAX_CONFIG_BYTES, configWhat), configWhat);
  checkLayersMatch(manifest, config, what);
  checkPlatform(config.platform, platform);
  const layers: F[] = [];
  for (const [i, layer] of manifest.layers.entries()) {
    layers.push(await ociBlob(contents, layer, `layer ${i} (${layer.digest})`));
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
    layers,
  };
}

interface DockerSaveEntry {
  readonly Config?: unknown;
  readonly RepoTags?: unknown;
  readonly Layers?: unknown;
}

async function fromDockerSave<F extends ArchiveFile>(
  contents: ArchiveContents<F>,
  platform: ImagePlatform,
): Promise<ArchiveImage<F>> {
  const manifestFile = contents.file("manifest.json") as F;
  const manifestBytes = await readSmall(manifestFile, MAX_MANIFEST_BYTES, "manifest.json");
  let entries: unknown;
  try {
    entries = JSON.parse(new TextDecoder().decode(manifestBytes));
  } catch (error) {
    throw imageStoreError("invalid", "the archive's manifest.json is not valid JSON", error);
  }
  if (!Array.isArray(entries) || entries.length === 0) {
    throw imageStoreError("invalid", "the archive's manifest.json lists no image");
  }
  if (entries.length > MAX_ARCHIVE_MANIFESTS) {
    throw imageStoreError("invalid", `the archive's manifest.json lists more than ${MAX_ARCHIVE_MANIFESTS} images`);
  }
  const configs = new Map<F, ParsedConfig>();
  const images: { entry: DockerSaveEntry; configFile: F; config: ParsedConfig; layers: string[] }[] = [];
  for (const [i, entry] of (entries as DockerSaveEntry[]).entries()) {
    const what = `image ${i} of the archive's manifest.json`;
    if (
      typeof entry !== "object" ||
      entry === null ||
      typeof entry.Config !== "string" ||
      !Array.isArray(entry.Layers) ||
      !entry.Layers.every((l) => typeof l === "string")
    ) {
      throw imageStoreError("invalid", `${what} lacks Config or Layers`);
    }
    const configFile = contents.file(entry.Config);
    if (configFile === undefined)
      throw imageStoreError("invalid", `the archive lacks ${entry.Config}, the config of ${what}`);
    // docker save names a config by its digest ("<hex>.json", or "blobs/sha256/<hex>"): check it.
    const named = /(?:^|\/)([a-f0-9]{64})(?:\.json)?$/.exec(entry.Config)?.[1];
    if (named !== undefined && (await configFile.digest("sha256")) !== `sha256:${named}`) {
      throw imageStoreError("digest-mismatch", `the config ${entry.Config} in the archive does not match its digest`);
    }
    let config = configs.get(configFile);
    if (config === undefined) {
      config = parseConfig(await readSmall(configFile, MAX_CONFIG_BYTES, entry.Config), `the config ${entry.Config}`);
      configs.set(configFile, config);
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
    throw imageStoreError(
      "invalid",
      `the archive holds ${forPlatform.length} images for this platform: import one at a time`,
    );
  }
  const { entry, configFile, config, layers: layerNames } = forPlatform[0] as (typeof images)[number];
  const layers = layerNames.map((name) => {
    const file = contents.file(name);
    if (file === undefined) throw imageStoreError("invalid", `the archive lacks the layer ${name}`);
    return file;
  });
  const descriptors: Descriptor[] = [];
  for (const file of layers) {
    descriptors.push({
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: await file.digest("sha256"),
      size: file.size,
    });
  }
  if (descriptors.length !== config.diffIds.length) {
    throw imageStoreError(
      "invalid",
      `the archive's image has ${descriptors.length} layers but its config lists ${config.diffIds.length} diff ids`,
    );
  }
  // docker save has no manifest: the image's digest is that of the OCI manifest that describes it.
  const configDigest = await configFile.digest("sha256");
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: MEDIA_TYPES.ociConfig, digest: configDigest, size: configFile.size },
    layers: descriptors,
  };
  const manifestDigest = await digestOfBytes(JSON.stringify(manifest));
  const repoTags = Array.isArray(entry.RepoTags)
    ? entry.RepoTags.filter((t): t is string => typeof t === "string")
    : [];
  return {
    resolved: { manifestDigest, digests: [manifestDigest], configDigest, config, layers: descriptors },
    refs: canonicalRefs(repoTags),
    layers,
  };
}

function checkPlatform(image: ImagePlatform, host: ImagePlatform): void {
  if (!platformMatches(image, host)) {
    throw imageStoreError(
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
