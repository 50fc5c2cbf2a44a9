/**
 * A sandbox's writable layer lives on its own disk: a sparse ext4 image on a loop device,
 * mounted nosuid,nodev. Its size is the sandbox's disk limit (a write past it fails inside
 * with ENOSPC), and the host file never holds more than that, whatever the sandbox writes.
 * Works on any host filesystem (no project quotas needed).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { lstat, mkdir, open, rename, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * The image's options: no journal (the layer dies with the sandbox, a crash loses nothing of
 * value), no room kept for growing the filesystem online (`resize_inode`: 1,024 reserved
 * descriptor blocks, written out in full, 4 MiB of every sandbox's disk and page cache for a
 * resize no sandbox gets), no reserved blocks, no eager zeroing.
 */
const MKFS_OPTIONS = ["-q", "-F", "-O", "^has_journal,^resize_inode", "-m", "0", "-E", "lazy_itable_init=1,nodiscard"];

/**
 * The file name of a ready disk image of `sizeMiB` (see ensureDiskTemplate): it names the
 * options it was made with, so a template made by an earlier version is never copied again.
 */
export function diskTemplateName(sizeMiB: number): string {
  const options = createHash("sha256").update(MKFS_OPTIONS.join(" ")).digest("hex").slice(0, 8);
  return `disk-${sizeMiB}-${options}.img`;
}

/**
 * Mount options: nosuid/nodev/noexec (a file planted there never runs with its owner's uid,
 * opens a device or runs at all from the host; inside, programs run through the overlay),
 * `discard` (files removed inside free the host's blocks) and `noinit_itable` (no background
 * zeroing of inode tables the sandbox never uses), and `errors=remount-ro` whatever the host's
 * mke2fs.conf says (an error in one sandbox's disk must never panic the host).
 */
export const DISK_MOUNT_OPTIONS = "loop,nosuid,nodev,noexec,discard,noinit_itable,errors=remount-ro";

/** Smallest disk: the layer template and ext4's own metadata take a few MiB. */
export const MIN_DISK_MIB = 16;

/**
 * Where a disk's first bytes come from: a ready image of the same size (a sparse copy of a
 * few MiB, the fast way), or a directory written in by mkfs itself (still far cheaper than
 * copying file by file after mounting).
 */
export type DiskSource = { readonly template: string } | { readonly contents?: string | undefined };

/** Creates `<dir>/disk.img` of `sizeMiB` from `source`, mounts it on `<dir>/disk`; answers the mount point. */
export async function createSandboxDisk(dir: string, sizeMiB: number, source: DiskSource = {}): Promise<string> {
  const image = join(dir, "disk.img");
  const mountPoint = join(dir, "disk");
  await mkdir(mountPoint, { recursive: true, mode: 0o700 });
  if ("template" in source) {
    // --sparse=always: a plain copy (copy_file_range) could write the holes out in full.
    await run("cp", ["--sparse=always", source.template, image]);
  } else {
    await makeImage(image, sizeMiB, source.contents);
  }
  await run("mount", ["-t", "ext4", "-o", DISK_MOUNT_OPTIONS, image, mountPoint]);
  return mountPoint;
}

/**
 * A ready disk image of `sizeMiB` holding `contents`, made once at `path` (aside, then
 * renamed). Disks copied from it share its filesystem UUID, which only tools that look disks up
 * by UUID care about (not the kernel, nor a mount by path).
 */
export async function ensureDiskTemplate(path: string, sizeMiB: number, contents: string): Promise<string> {
  if (await lstat(path).catch(() => undefined)) return path;
  const staging = `${path}.building-${process.pid}`;
  await makeImage(staging, sizeMiB, contents);
  // On disk before it is named: a template cut short by a power loss would be copied into
  // every later sandbox as a damaged filesystem.
  const file = await open(staging, "r+");
  try {
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(staging, path);
  return path;
}

async function makeImage(image: string, sizeMiB: number, contents: string | undefined): Promise<void> {
  if (!Number.isSafeInteger(sizeMiB) || sizeMiB < MIN_DISK_MIB) {
    throw new Error(`a sandbox disk must be a whole number of MiB, at least ${MIN_DISK_MIB}, got ${sizeMiB}`);
  }
  await writeFile(image, "", { mode: 0o600 });
  await truncate(image, sizeMiB * 1024 * 1024);
  await run("mkfs.ext4", [...MKFS_OPTIONS, ...(contents ? ["-d", contents] : []), image]);
}

/** Unmounts the disk (the loop device goes with it) and removes its image. */
export async function removeSandboxDisk(dir: string): Promise<void> {
  await run("umount", ["-l", join(dir, "disk")]).catch(() => {});
  await rm(join(dir, "disk.img"), { force: true }).catch(() => {});
}
