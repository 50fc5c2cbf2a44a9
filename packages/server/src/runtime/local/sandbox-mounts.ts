/**
 * The runtime's sandboxes dir is a mount of its own (the dir bound on itself, private), so that
 * every sandbox's disk and root, all mounted under it, can be let go of at once: each launch
 * unmounts it in its private mount namespace (launch-command.ts). That namespace starts as a
 * copy of the host's mount table and lives as long as the sandbox; without this, sandbox k
 * would hold a copy of the k − 1 before it (2 mounts each): 1,000 sandboxes held ~1 MiB of
 * kernel memory each in copies of each other's mounts.
 */
import { execFile } from "node:child_process";
import { readFile, realpath } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Whether `dir` is a mount point in this mount namespace. */
export async function isMountPoint(dir: string, mountinfo = "/proc/self/mountinfo"): Promise<boolean> {
  const path = await realpath(dir);
  const text = await readFile(mountinfo, "utf8");
  // Field 5 is the mount point, with space, tab, newline and backslash as octal escapes.
  return text.split("\n").some((line) => unescapeMountPath(line.split(" ")[4] ?? "") === path);
}

const unescapeMountPath = (path: string) =>
  path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));

/**
 * Makes `dir` a private mount of itself, unless it is a mount point already (a server that
 * crashed left it: reused). No sandbox may be mounted under it yet when it is made: those would
 * be hidden under the new mount.
 */
export async function mountSandboxesDir(dir: string): Promise<void> {
  if (await isMountPoint(dir)) return;
  await run("mount", ["--bind", dir, dir]);
  // Private: the mounts made under it do not propagate to the mount it hides (nor anywhere).
  await run("mount", ["--make-private", dir]);
}

/** Lets go of it, once nothing of a sandbox is mounted under it any more. */
export async function unmountSandboxesDir(dir: string): Promise<void> {
  if (await isMountPoint(dir)) await run("umount", ["-l", dir]);
}
