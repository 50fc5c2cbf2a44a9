/**
 * A sandbox's writable layer lives on its own disk: a sparse ext4 image on a loop device,
 * mounted nosuid,nodev. Its size is the sandbox's disk limit (a write past it fails inside
 * with ENOSPC), and the host file never holds more than that, whatever the sandbox writes.
 * Works on any host filesystem (no project quotas needed).
 */
import { execFile } from "node:child_process";
import { mkdir, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The image's options: no journal (the layer dies with the sandbox, a crash loses nothing of value), no reserved blocks, no eager zeroing. */
const MKFS_OPTIONS = ["-q", "-F", "-O", "^has_journal", "-m", "0", "-E", "lazy_itable_init=1,nodiscard"];

/**
 * Mount options: nosuid/nodev (a file planted there never runs with its owner's uid nor opens
 * a device), `discard` (files removed inside free the host's blocks) and `noinit_itable` (no
 * background zeroing of inode tables the sandbox never uses).
 */
export const DISK_MOUNT_OPTIONS = "loop,nosuid,nodev,noexec,discard,noinit_itable";

/**
 * Creates `<dir>/disk.img` of `sizeMiB`, holding a copy of the `contents` dir (written by
 * mkfs itself: far cheaper than copying file by file), and mounts it on `<dir>/disk`;
 * answers the mount point.
 */
export async function createSandboxDisk(dir: string, sizeMiB: number, contents?: string): Promise<string> {
  if (!Number.isSafeInteger(sizeMiB) || sizeMiB < 16)
    throw new Error(`the disk must be at least 16 MiB, got ${sizeMiB}`);
  const image = join(dir, "disk.img");
  const mountPoint = join(dir, "disk");
  await Promise.all([writeFile(image, "", { mode: 0o600 }), mkdir(mountPoint, { recursive: true, mode: 0o700 })]);
  await truncate(image, sizeMiB * 1024 * 1024);
  await run("mkfs.ext4", [...MKFS_OPTIONS, ...(contents ? ["-d", contents] : []), image]);
  await run("mount", ["-t", "ext4", "-o", DISK_MOUNT_OPTIONS, image, mountPoint]);
  return mountPoint;
}

/** Unmounts the disk (the loop device goes with it) and removes its image. */
export async function removeSandboxDisk(dir: string): Promise<void> {
  await run("umount", ["-l", join(dir, "disk")]).catch(() => {});
  await rm(join(dir, "disk.img"), { force: true }).catch(() => {});
}
