/** Platforms: how one is written, whether an image's runs on a host, and how one is chosen from an index. */
import type { ImagePlatform } from "../engine/image-store.js";
import type { Descriptor } from "./manifest.js";

export const formatPlatform = (p: ImagePlatform): string =>
  `${p.os}/${p.architecture}${p.variant !== undefined ? `/${p.variant}` : ""}`;

/**
 * Whether an image made for `image` runs on `host`: same os and architecture, and a variant
 * that is the host's or unsaid (arm64 images rarely say v8).
 */
export function platformMatches(image: ImagePlatform, host: ImagePlatform): boolean {
  if (image.os !== host.os || image.architecture !== host.architecture) return false;
  return image.variant === undefined || host.variant === undefined || image.variant === host.variant;
}

/**
 * The index entry for `host`: one that names the host's variant first, then one that names
 * none. Entries without a platform (attestations, or an OCI layout's single image) never match.
 */
export function choosePlatform(manifests: readonly Descriptor[], host: ImagePlatform): Descriptor | undefined {
  const candidates = manifests.filter((m) => m.platform !== undefined && platformMatches(m.platform, host));
  return (
    candidates.find((m) => m.platform?.variant !== undefined && m.platform.variant === host.variant) ?? candidates[0]
  );
}
