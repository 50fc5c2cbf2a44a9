/**
 * What a sandbox's root is made of, for the default image and for an image of the store alike:
 * lower dirs (top first), what its disk starts with, and whether the host's /usr is bound in.
 *
 * - The default image: its root-owned skeleton as the one lower dir, taken as it is (its files
 *   show as nobody inside, as the host's /usr does), the host's /usr subtrees bound read-only
 *   over /usr, and a disk that starts from the skeleton's layer template (image.ts, which has
 *   a real /etc/resolv.conf).
 * - An image: the mount-point layer on top (the dirs and the file bwrap and the launcher mount
 *   over, so no image can turn them into symlinks: bwrap makes a missing mount point through
 *   whatever symlink the image put in its way, and it does so while the host's root is still
 *   its /oldroot), then the image's layers from the store, idmapped (an image's uid u shows as
 *   u), each once; an empty disk; nothing of the host's /usr.
 */
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { goArch, type ImageRecord } from "@sbx/server-kit";
import type { DefaultImage } from "./image.js";
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
}

/** overlayfs' limit on lower layers (the mount-point layer takes one). */
export const MAX_IMAGE_LAYERS = 499;

/** Mount points every image root gets on top: /.sbx (the control dir), /proc, /dev, /tmp (host root's). */
const MOUNT_POINTS = [".sbx", "proc", "dev", "tmp"];
/**
 * And /etc/resolv.conf (the sandbox's DNS, bound over it), in an /etc that is the image's
 * root's (canonical: the layer is idmapped like the image's own), so that /etc, which this dir
 * covers the image's attributes of, stays the sandbox root's to write in as in any image.
 */
const ETC_DIR = "etc";
const RESOLV_CONF = "etc/resolv.conf";

/** The pieces of image roots that are not the image's: made once, root's. */
export interface ImageRootParts {
  /**
   * The mount-point layer (idmapped: host root's dirs show as nobody, as ever; /etc and its
   * empty resolv.conf are the image's root's).
   */
  readonly mountPoints: string;
  /** An image root's disk contents: an empty `upper/` and `work/`, owned canonically. */
  readonly emptyLayer: string;
}

export const IMAGE_ROOT_PARTS_VERSION = "2";

/** Builds the parts under `dir` once (atomically: built aside, then renamed). */
export async function ensureImageRootParts(dir: string, layerIdBase: number): Promise<ImageRootParts> {
  const parts = join(dir, `image-root-v${IMAGE_ROOT_PARTS_VERSION}-${layerIdBase}`);
  const built = { mountPoints: join(parts, "mount-points"), emptyLayer: join(parts, "empty-layer") };
  if (existsSync(parts)) return built;
  const staging = `${parts}.building-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  for (const d of MOUNT_POINTS) await mkdir(join(staging, "mount-points", d), { recursive: true });
  for (const d of ["upper", "work"]) await mkdir(join(staging, "empty-layer", d), { recursive: true });
  for (const d of ["", "mount-points", "empty-layer", ...MOUNT_POINTS.map((m) => `mount-points/${m}`)]) {
    await chown(join(staging, d), 0, 0);
    await chmod(join(staging, d), 0o755);
  }
  await mkdir(join(staging, "mount-points", ETC_DIR));
  await writeFile(join(staging, "mount-points", RESOLV_CONF), "");
  for (const [path, mode] of [
    [ETC_DIR, 0o755],
    [RESOLV_CONF, 0o644],
  ] as const) {
    await chown(join(staging, "mount-points", path), layerIdBase, layerIdBase);
    await chmod(join(staging, "mount-points", path), mode);
  }
  // The image's root owns its upper: what the sandbox writes at / lands there.
  await chown(join(staging, "empty-layer", "upper"), layerIdBase, layerIdBase);
  await chown(join(staging, "empty-layer", "work"), layerIdBase, layerIdBase);
  await chmod(join(staging, "empty-layer", "work"), 0o700);
  await rename(staging, parts);
  return built;
}

export function defaultRoot(image: DefaultImage): RootRecipe {
  return { lowers: [{ path: image.lower, idmapped: false }], diskContents: image.layer, hostUsr: true };
}

export function imageRoot(image: ImageRecord, layers: LayerSource, parts: ImageRootParts): RootRecipe {
  return {
    lowers: [
      { path: parts.mountPoints, idmapped: true },
      ...collapseLayers(image.layers).map((diffId) => ({ path: layers.layerDir(diffId), idmapped: true })),
    ],
    diskContents: parts.emptyLayer,
    hostUsr: false,
  };
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
