/** Mounts a sandbox's root on the host: overlayfs of the image's lower dir under the sandbox's writable layer. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** nosuid,nodev: a setuid file or device node planted in a layer is inert on the host too. */
export async function mountOverlay(lower: string, upper: string, work: string, target: string): Promise<void> {
  await run("mount", [
    "-t",
    "overlay",
    "overlay",
    "-o",
    `nosuid,nodev,lowerdir=${lower},upperdir=${upper},workdir=${work}`,
    target,
  ]);
}
