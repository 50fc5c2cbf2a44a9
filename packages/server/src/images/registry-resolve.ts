/**
 * From a reference to the image to pull: the manifest (through an index, for the host's
 * platform), every manifest's digest checked (against the reference's digest, the index
 * entry's, or the registry's Docker-Content-Digest), and the config, checked and parsed.
 */
import type { ImageReference } from "@sbx/proto";
import type { ImagePlatform } from "@sbx/server-kit";
import {
  checkLayersMatch,
  choosePlatform,
  formatPlatform,
  type ImageIndex,
  type ImageManifest,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  parseConfig,
  parseManifestOrIndex,
  platformMatches,
  type ResolvedImage,
} from "@sbx/server-kit/images";
import { algorithmOf, digestOf, isDigest } from "./digest.js";
import type { FetchedManifest, RegistryClient } from "./registry-client.js";
import { storeError } from "./store-errors.js";

/** An index within an index within an index is as deep as any real image goes. */
const MAX_INDEX_DEPTH = 3;

/** What a reference leads to: an image the store has (by its manifest digest), or a new one. */
export type Resolution =
  | { readonly kind: "known"; readonly imageId: string; readonly digests: readonly string[] }
  | { readonly kind: "new"; readonly image: ResolvedImage };

/** `knownImage`: the store's image of a manifest digest, if it has one (then no config is fetched). */
export async function resolveFromRegistry(
  client: RegistryClient,
  ref: ImageReference,
  platform: ImagePlatform,
  knownImage: (manifestDigest: string) => string | undefined,
): Promise<Resolution> {
  let reference = ref.digest ?? (ref.tag as string);
  let expected = ref.digest;
  const digests: string[] = [];
  for (let depth = 0; ; depth++) {
    const what = `the manifest ${reference} of ${client.name}`;
    const fetched = await client.getManifest(reference, MAX_MANIFEST_BYTES);
    const digest = checkManifestDigest(fetched, expected, what);
    digests.push(digest);
    const doc: ImageIndex | ImageManifest = parseManifestOrIndex(fetched.bytes, what, fetched.contentType);
    if (doc.kind === "manifest") {
      const imageId = knownImage(digest);
      if (imageId !== undefined) return { kind: "known", imageId, digests };
      return { kind: "new", image: await resolveManifest(client, doc, digests, platform, what) };
    }
    if (depth >= MAX_INDEX_DEPTH)
      throw storeError("invalid", `${what} nests indexes more than ${MAX_INDEX_DEPTH} deep`);
    const chosen = choosePlatform(doc.manifests, platform);
    if (chosen === undefined) {
      const offered = doc.manifests.flatMap((m) => (m.platform ? [formatPlatform(m.platform)] : []));
      throw storeError(
        "unsupported",
        `${client.name}${ref.tag !== undefined ? `:${ref.tag}` : ""} has no image for ${formatPlatform(platform)} (it has ${offered.length > 0 ? offered.join(", ") : "none with a platform"})`,
      );
    }
    if (chosen.size > MAX_MANIFEST_BYTES)
      throw storeError("invalid", `${what} lists a manifest of ${chosen.size} bytes`);
    reference = chosen.digest;
    expected = chosen.digest;
  }
}

async function resolveManifest(
  client: RegistryClient,
  manifest: ImageManifest,
  digests: string[],
  platform: ImagePlatform,
  what: string,
): Promise<ResolvedImage> {
  const { digest, size } = manifest.config;
  if (size > MAX_CONFIG_BYTES)
    throw storeError("invalid", `${what} has a config of ${size} bytes, over ${MAX_CONFIG_BYTES}`);
  const bytes = await client.getSmallBlob(digest, MAX_CONFIG_BYTES);
  const configWhat = `the config ${digest} of ${client.name}`;
  if (bytes.length !== size || digestOf(bytes, algorithmOf(digest)) !== digest) {
    throw storeError("digest-mismatch", `${configWhat} does not match its digest and size`);
  }
  const config = parseConfig(bytes, configWhat);
  checkLayersMatch(manifest, config, what);
  if (!platformMatches(config.platform, platform)) {
    throw storeError(
      "unsupported",
      `${client.name} is an image for ${formatPlatform(config.platform)}, not for this host (${formatPlatform(platform)})`,
    );
  }
  return {
    manifestDigest: digests[digests.length - 1] as string,
    digests,
    configDigest: digest,
    config,
    layers: manifest.layers,
  };
}

/**
 * The manifest's digest, checked: against the one asked for (pulled by digest, or chosen from
 * an index), else against the registry's Docker-Content-Digest when it sends one.
 */
function checkManifestDigest(fetched: FetchedManifest, expected: string | undefined, what: string): string {
  const claimed = expected ?? (isDigest(fetched.headerDigest) ? fetched.headerDigest : undefined);
  if (claimed === undefined) return digestOf(fetched.bytes);
  const actual = digestOf(fetched.bytes, algorithmOf(claimed));
  if (actual !== claimed) {
    throw storeError("digest-mismatch", `${what} does not match its digest: expected ${claimed}, got ${actual}`);
  }
  return claimed;
}
