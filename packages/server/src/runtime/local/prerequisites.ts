/**
 * What this machine lacks to run local sandboxes: each missing tool, permission or kernel
 * feature as a problem that says how to fix it, found by probing the real thing (a bubblewrap
 * start as an unprivileged uid, an overlay mount and a loop-mounted disk in the data dir).
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { agentProblems } from "./agent-binary.js";
import { cgroupProblems } from "./cgroups.js";
import { LAUNCH_ROOT, usrBinds } from "./launch-command.js";
import { mountOverlay } from "./overlay.js";
import { createSandboxDisk, MIN_DISK_MIB, removeSandboxDisk } from "./sandbox-disk.js";
import { seccompSupported } from "./seccomp.js";
import { type UidRange, uidRangeProblems } from "./uid-range.js";

const run = promisify(execFile);

/**
 * The problems in the way of the local runtime, empty when there are none. `dir` is the
 * runtime's own dir in the data dir (where the probes run), `uidRange` the sandboxes' uids.
 */
export async function localRuntimeProblems(dir: string, uidRange: UidRange): Promise<string[]> {
  const problems: string[] = [];
  if (process.platform !== "linux") return ["the local runtime needs Linux"];
  if (!seccompSupported()) problems.push(`the seccomp filter supports x86_64 only, this machine is ${process.arch}`);
  if (process.getuid?.() !== 0) problems.push("the server must run as root to create cgroups and overlay mounts");
  for (const [tool, pkg] of [
    ["bwrap", "bubblewrap"],
    ["setpriv", "util-linux"],
    ["unshare", "util-linux"],
    ["mkfifo", "coreutils"],
    ["mount", "mount"],
    ["mkfs.ext4", "e2fsprogs"],
  ] as const) {
    if (!(await which(tool))) problems.push(`${tool} is missing: install it with 'apt-get install ${pkg}'`);
  }
  problems.push(...agentProblems());
  if (!existsSync("/usr/bin/python3")) {
    problems.push(
      "/usr/bin/python3 is missing (the default image offers it to sandboxed code): install it with 'apt-get install python3'",
    );
  }
  if (!existsSync(LAUNCH_ROOT))
    problems.push(`${LAUNCH_ROOT} is missing (sandboxes are launched from it): mkdir ${LAUNCH_ROOT}`);
  problems.push(...(await uidRangeProblems(uidRange)));
  problems.push(...(await cgroupProblems()));
  if (problems.length > 0) return problems;
  try {
    await run("setpriv", [
      `--reuid=${uidRange.start}`,
      `--regid=${uidRange.start}`,
      "--clear-groups",
      "bwrap",
      "--unshare-all",
      ...usrBinds(),
      "--symlink",
      "usr/lib64",
      "/lib64",
      "--symlink",
      "usr/lib",
      "/lib",
      "/usr/bin/true",
    ]);
  } catch (error) {
    problems.push(
      `bubblewrap cannot create namespaces as an unprivileged user (${firstLine(error)}): enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)`,
    );
  }
  try {
    await probeOverlay(dir);
  } catch (error) {
    // A full or unwritable data dir fails every later probe too: name it once.
    problems.push(dataDirProblem(dir, error) ?? overlayProblem(dir, error));
    return problems;
  }
  try {
    await probeDisk(dir);
  } catch (error) {
    problems.push(
      dataDirProblem(dir, error) ??
        `cannot mount an ext4 image on a loop device under ${dir} (${firstLine(error)}): load the loop module (modprobe loop) and give the server /dev/loop-control`,
    );
  }
  return problems;
}

async function probeOverlay(dir: string): Promise<void> {
  const probe = join(dir, `overlay-probe-${process.pid}`);
  try {
    await Promise.all(["lower", "upper", "work", "merged"].map((d) => mkdir(join(probe, d), { recursive: true })));
    // Sandboxes need room in the data dir, not only a mount: a full disk shows up here.
    await writeFile(join(probe, "space"), new Uint8Array(4096));
    await mountOverlay(join(probe, "lower"), join(probe, "upper"), join(probe, "work"), join(probe, "merged"));
    await run("umount", [join(probe, "merged")]);
  } finally {
    await rm(probe, { recursive: true, force: true });
  }
}

/** Sandbox disks are sparse ext4 images on loop devices (see sandbox-disk.ts). */
async function probeDisk(dir: string): Promise<void> {
  const probe = join(dir, `disk-probe-${process.pid}`);
  await mkdir(probe, { recursive: true, mode: 0o700 });
  try {
    await createSandboxDisk(probe, MIN_DISK_MIB);
  } finally {
    await removeSandboxDisk(probe);
    await rm(probe, { recursive: true, force: true });
  }
}

/** A failed probe caused by the data dir itself (full, read-only, unwritable), if it was. */
function dataDirProblem(dir: string, error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException).code;
  const reason = firstLine(error) ?? String(error);
  if (code === "ENOSPC" || code === "EDQUOT" || /no space left|quota exceeded/i.test(reason)) {
    return `the data dir's filesystem is full (${reason}): free space under ${dir}, or use another --data-dir`;
  }
  if (code === "EROFS" || /read-only file system/i.test(reason)) {
    return `the data dir is on a read-only filesystem (${reason}): use a writable --data-dir`;
  }
  if (typeof code === "string") return `cannot write to the data dir ${dir} (${reason})`;
  return undefined;
}

const overlayProblem = (dir: string, error: unknown) =>
  `cannot mount overlayfs under ${dir} (${firstLine(error) ?? String(error)}): load the overlay module (modprobe overlay)`;

async function which(tool: string): Promise<boolean> {
  try {
    await run("sh", ["-c", `command -v ${tool}`]);
    return true;
  } catch {
    return false;
  }
}

const firstLine = (error: unknown) =>
  String((error as { stderr?: string }).stderr || (error as Error).message).split("\n")[0];
