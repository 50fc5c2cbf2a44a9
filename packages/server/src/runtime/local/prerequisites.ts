/**
 * What this machine lacks to run local sandboxes: each missing tool, permission or kernel
 * feature as a problem that says how to fix it, found by probing the real thing (a bubblewrap
 * start as an unprivileged uid, an overlay of idmapped layers and a loop-mounted disk in the
 * data dir).
 */
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chown, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { agentProblems, installAgent } from "./agent-binary.js";
import { cgroupProblems } from "./cgroups.js";
import { LAUNCH_FDS, LAUNCH_ROOT, usrBinds } from "./launch-command.js";
import { mountRoot } from "./root-mount.js";
import { createSandboxDisk, MIN_DISK_MIB, removeSandboxDisk } from "./sandbox-disk.js";
import { seccompSupported } from "./seccomp.js";
import { sandboxRangeProblems, type UidRange } from "./uid-range.js";
import { completeUsernsHandshake } from "./userns-handshake.js";

const run = promisify(execFile);

/**
 * The problems in the way of the local runtime, empty when there are none. `dir` is the
 * runtime's own dir in the data dir (where the probes run), `layerIdBase` the image store's
 * (and every root's) canonical block; `claimRange` claims the sandboxes' ids host-wide (once
 * nothing else is missing) and answers them.
 */
export async function localRuntimeProblems(
  dir: string,
  layerIdBase: number,
  claimRange: () => Promise<UidRange>,
): Promise<string[]> {
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
    // Sandboxes' network: links, the policy table, cutting flows, configuring their namespace.
    ["ip", "iproute2"],
    ["nft", "nftables"],
    ["conntrack", "conntrack"],
    ["nsenter", "util-linux"],
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
  problems.push(...(await cgroupProblems()));
  if (problems.length > 0) return problems;
  let uidRange: UidRange;
  try {
    uidRange = await claimRange();
  } catch (error) {
    // (The claim installs the agent binary in the data dir first: a full one fails there.)
    const inDataDir = (error as NodeJS.ErrnoException).path?.startsWith(dir);
    return [(inDataDir && dataDirProblem(dir, error)) || (error as Error).message];
  }
  problems.push(...(await sandboxRangeProblems(uidRange, layerIdBase)));
  if (problems.length > 0) return problems;
  if (!(await bwrapHasHandshake())) {
    problems.push(
      "bubblewrap is too old: sandboxes need its --userns-block-fd and --info-fd (bubblewrap 0.5 or later; Debian 12 has 0.8)",
    );
  } else {
    try {
      await probeBwrap(uidRange.start);
    } catch (error) {
      problems.push(
        `bubblewrap cannot create namespaces as an unprivileged user (${firstLine(error)}): enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)`,
      );
    }
  }
  try {
    await probeIdmappedRoot(dir, uidRange.start, layerIdBase);
  } catch (error) {
    // A full or unwritable data dir fails every later probe too: name it once.
    problems.push(dataDirProblem(dir, error) ?? idmapProblem(dir, error));
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

/**
 * Mounts a root the way sandboxes get theirs (root-mount.ts): an overlay whose lower dir and
 * upper dir are idmapped clones (the layer ids `layerIdBase + u` seen as `base + u`), and checks
 * that an owner shows shifted (the helper itself refuses a root that came up read-only).
 */
async function probeIdmappedRoot(dir: string, base: number, layerIdBase: number): Promise<void> {
  const probe = join(dir, `root-probe-${process.pid}`);
  const merged = join(probe, "merged");
  try {
    await Promise.all(
      ["lower", "disk/upper", "disk/work", "merged"].map((d) => mkdir(join(probe, d), { recursive: true })),
    );
    // Sandboxes need room in the data dir, not only a mount: a full disk shows up here.
    await writeFile(join(probe, "space"), new Uint8Array(4096));
    await writeFile(join(probe, "lower", "owned"), "");
    await chown(join(probe, "lower", "owned"), layerIdBase + 1234, layerIdBase + 1234);
    for (const d of ["disk/upper", "disk/work"]) await chown(join(probe, d), layerIdBase, layerIdBase);
    const helper = await installAgent(dir);
    await mountRoot({
      helper,
      target: merged,
      disk: join(probe, "disk"),
      layerIdBase,
      base,
      lowers: [{ path: join(probe, "lower"), idmapped: true }],
    });
    try {
      const owner = (await stat(join(merged, "owned"))).uid;
      if (owner !== base + 1234) {
        throw new Error(`a layer file of id ${layerIdBase + 1234} shows as ${owner}, not ${base + 1234}`);
      }
    } finally {
      await run("umount", [merged]);
    }
  } finally {
    await rm(probe, { recursive: true, force: true });
  }
}

/**
 * Starts bwrap as sandboxes are started, unprivileged as the range's first id with its user
 * namespace mapped by us (userns-handshake.ts), and runs `true` in it.
 */
async function probeBwrap(base: number): Promise<void> {
  const args = [`--reuid=${base}`, `--regid=${base}`, "--clear-groups", "bwrap", "--unshare-all"];
  args.push("--unshare-user");
  args.push("--info-fd", String(LAUNCH_FDS.info), "--userns-block-fd", String(LAUNCH_FDS.block));
  args.push("--uid", "0", "--gid", "0", ...usrBinds(), "--symlink", "usr/lib64", "/lib64");
  args.push("--symlink", "usr/lib", "/lib", "/usr/bin/true");
  const stdio: ("ignore" | "pipe")[] = ["ignore", "ignore", "pipe", "ignore", "ignore", "ignore", "ignore"];
  stdio[LAUNCH_FDS.info] = "pipe";
  stdio[LAUNCH_FDS.block] = "pipe";
  const child = spawn("setpriv", args, { stdio, env: {} });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (text: string) => {
    stderr += text;
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("exit", resolve);
    child.on("error", reject);
  });
  const handshake = completeUsernsHandshake(child, base, 10_000).then(
    () => undefined,
    (error: Error) => error,
  );
  const code = await exited;
  const failed = await handshake;
  if (failed) throw new Error(stderr.trim() || failed.message);
  if (code !== 0) throw new Error(stderr.trim() || `bwrap exited ${code}`);
}

/** Whether bwrap knows the options of the user namespace handshake. */
async function bwrapHasHandshake(): Promise<boolean> {
  const { stdout } = await run("bwrap", ["--help"]).catch(() => ({ stdout: "" }));
  return stdout.includes("--userns-block-fd") && stdout.includes("--info-fd");
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

const idmapProblem = (dir: string, error: unknown) =>
  `cannot mount a sandbox root under ${dir} (${firstLine(error) ?? String(error)}): sandboxes need overlayfs (modprobe overlay) with idmapped layers — idmapped mounts (mount_setattr MOUNT_ATTR_IDMAP) of the data dir's filesystem and of overlayfs lower and upper dirs, Linux 5.19 or later on a filesystem that supports them (ext4, xfs, btrfs, tmpfs 6.3+; not NFS or FUSE)`;

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
