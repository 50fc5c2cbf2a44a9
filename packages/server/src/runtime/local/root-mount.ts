/**
 * Mounts a sandbox's root on the host: an overlay of read-only lower dirs under the upper dir
 * on the sandbox's own disk, made by the agent binary's host-side `mount-root` (run here as
 * root, never inside a sandbox; see agent/mount_root.go). Node cannot make idmapped mounts
 * (open_tree, mount_setattr), and mount(8) cannot either on Debian 12.
 *
 * Owners on disk are canonical: the image store keeps an image's uid u as `layerIdBase + u`,
 * and so does every sandbox's disk. The helper shows them to the sandbox whose block starts at
 * `base` as `base + u`, through detached idmapped clones of the layers and of the disk that
 * overlayfs is given as `/proc/self/fd/N` (nothing idmapped is ever attached to a host path).
 * So a disk is the same whichever block its sandbox gets, and its upper dir could become a
 * layer as it is.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** One lower dir of a root: an image layer of the store (idmapped), or a dir taken as it is (root-owned). */
export interface LowerDir {
  readonly path: string;
  readonly idmapped: boolean;
}

export interface RootMount {
  /** The agent binary (root's): its `mount-root` does the mounting. */
  readonly helper: string;
  /** Where the root is mounted (root's dir under the sandbox's dir). */
  readonly target: string;
  /** The sandbox's disk, mounted, holding `upper/` and `work/` owned by `layerIdBase` (canonical root). */
  readonly disk: string;
  /** The canonical block's first id: what image id 0 is on disk. */
  readonly layerIdBase: number;
  /** The sandbox's block's first id: what image id 0 is to the sandbox (its root). */
  readonly base: number;
  /** Top first; no dir twice (see `collapseLayers`). */
  readonly lowers: readonly LowerDir[];
}

/** Mounts the root (nosuid, nodev; userxattr: opaque dirs are `user.overlay.opaque`). */
export async function mountRoot(root: RootMount): Promise<void> {
  const args = [
    "mount-root",
    "--target",
    root.target,
    "--upper-disk",
    root.disk,
    "--id-from",
    String(root.layerIdBase),
    "--id-to",
    String(root.base),
  ];
  for (const lower of root.lowers) args.push(lower.idmapped ? "--lower-idmapped" : "--lower", lower.path);
  try {
    await run(root.helper, args, { env: {} });
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? "").trim();
    throw new Error(stderr.replace(/^sbx-agent: /, "") || (error as Error).message);
  }
}

/**
 * An image's layers (bottom first, as the image lists them) as lower dirs, top first, each
 * once: a layer that comes again higher up is kept only there. Overlayfs refuses a dir twice,
 * and the stack shows the same files either way (a path that the upper copy does not have or
 * hide, the lower copy has not either).
 */
export function collapseLayers(bottomFirst: readonly string[]): string[] {
  const seen = new Set<string>();
  const topFirst: string[] = [];
  for (const layer of [...bottomFirst].reverse()) {
    if (seen.has(layer)) continue;
    seen.add(layer);
    topFirst.push(layer);
  }
  return topFirst;
}
