/**
 * What a sandbox's root is made of, for the default image and for an image of the store alike:
 * lower dirs (top first), what its disk starts with, and whether the host's /usr is bound in.
 *
 * - The default image: its root-owned skeleton as the one lower dir, taken as it is (its files
 *   show as nobody inside, as the host's /usr does), the host's /usr subtrees bound read-only
 *   over /usr, and a disk that starts from the skeleton's layer template (image.ts, which has
 *   a real /etc/resolv.conf).
 * - An image: a mount-point layer on top (the dirs and the file bwrap and the launcher mount
 *   over, so no image can turn them into symlinks: bwrap makes a missing mount point through
 *   whatever symlink the image put in its way, and it does so while the host's root is still
 *   its /oldroot; see mount-point-layers.ts, and image-etc.ts for an image whose /etc is a
 *   symlink), then the image's layers from the store, idmapped (an image's uid u shows as u),
 *   each once; an empty disk; nothing of the host's /usr.
 */
import { existsSync } from "node:fs";
import { goArch, type ImageRecord } from "@sbx/server-kit";
import type { DefaultImage } from "./image.js";
import type { ImageEtc } from "./image-etc.js";
import { collapseLayers, type LowerDir } from "./root-mount.js";

/** What the runtime needs of the image store (the server's `OciImageStore`). */
export interface LayerSource {
  /** The dir layer `diffId` is unpacked in (root's; an overlay lower dir as it is). */
  layerDir(diffId: string): string;
  /**
   * A token naming that dir as it is now: never the same once the dir was removed, even if it
   * is unpacked again (and gets the inode number of the old one); undefined when missing.
   */
  layerToken(diffId: string): string | undefined;
  /** On-disk uid/gid of an image's id 0 (image id u is stored as this plus u). */
  readonly layerIdBase: number;
}

export interface RootRecipe {
  /** Top first, each once. */
  readonly lowers: readonly LowerDir[];
  /** What the sandbox's disk starts with (`upper/`, `work/`, owned canonically). */
  readonly diskContents: string;
  /** Bind the host's /usr subtrees read-only (the default image). */
  readonly hostUsr: boolean;
  /**
   * Where the sandbox's DNS config is bound: a real file of the root, at a path with no
   * symlink in it (`/etc/resolv.conf`, or where an image's /etc symlink leads).
   */
  readonly resolvConf: string;
}

/** overlayfs' limit on lower layers (the mount-point layer takes one). */
export const MAX_IMAGE_LAYERS = 499;

export function defaultRoot(image: DefaultImage): RootRecipe {
  return {
    lowers: [{ path: image.lower, idmapped: false }],
    diskContents: image.layer,
    hostUsr: true,
    resolvConf: "/etc/resolv.conf",
  };
}

/**
 * An image's root: `mountPoints` (its mount-point layer, see mount-point-layers.ts) on top of
 * its layers; a disk that starts from `emptyLayer`.
 */
export function imageRoot(
  image: ImageRecord,
  layers: LayerSource,
  mountPoints: { readonly path: string; readonly resolvConf: string },
  emptyLayer: string,
): RootRecipe {
  return {
    lowers: [
      { path: mountPoints.path, idmapped: true },
      ...imageLayerDirs(image, layers).map((path) => ({ path, idmapped: true })),
    ],
    diskContents: emptyLayer,
    hostUsr: false,
    resolvConf: mountPoints.resolvConf,
  };
}

/** The store's dirs of an image's layers, top first, each once. */
export function imageLayerDirs(image: ImageRecord, layers: LayerSource): string[] {
  return collapseLayers(image.layers).map((diffId) => layers.layerDir(diffId));
}

/** Why a sandbox cannot have an image whose /etc is `etc` (undefined: it can). */
export function imageEtcProblem(image: ImageRecord, etc: ImageEtc): string | undefined {
  return etc.kind === "refused" ? `image ${image.id} cannot be started: its /etc ${etc.problem}` : undefined;
}

/**
 * Which dirs an image's layers are now (the store's token of each): unchanged while the store
 * keeps them, different once a layer was removed (and maybe unpacked again, whatever inode
 * number its new dir has); undefined when one is missing (a stamp equal to no other).
 */
export function layerStamp(image: ImageRecord, layers: LayerSource): string | undefined {
  const parts: string[] = [];
  for (const diffId of collapseLayers(image.layers)) {
    const token = layers.layerToken(diffId);
    if (token === undefined) return undefined;
    parts.push(token);
  }
  return parts.join(",");
}

/** The host's architecture in OCI's (GOARCH) names. */
export const hostArchitecture = (): string => goArch(process.arch);

/**
 * Why the local runtime cannot start `image` (undefined: it can): it must be a Linux image of
 * this host's architecture, whose layers are all in the store.
 */
export function imageRootProblem(image: ImageRecord, layers: LayerSource | undefined): string | undefined {
  if (!layers) return `the local runtime has no image store: it starts its default image only`;
  const { os, architecture, variant } = image.platform;
  const host = hostArchitecture();
  if (os !== "linux" || architecture !== host) {
    return `image ${image.id} is for ${os}/${architecture}${variant ? `/${variant}` : ""}: this machine runs linux/${host} images only`;
  }
  const unique = collapseLayers(image.layers);
  if (unique.length > MAX_IMAGE_LAYERS) {
    return `image ${image.id} has ${unique.length} distinct layers: overlayfs stacks at most ${MAX_IMAGE_LAYERS}`;
  }
  for (const diffId of unique) {
    let dir: string;
    try {
      dir = layers.layerDir(diffId);
    } catch {
      return `image ${image.id} names a malformed layer ${JSON.stringify(diffId)}`;
    }
    if (!existsSync(dir)) return `layer ${diffId} of image ${image.id} is not in the image store: pull the image again`;
  }
  return undefined;
}
