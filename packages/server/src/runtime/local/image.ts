/**
 * The default image: a small root skeleton built from the host's own system, shared
 * read-only by every sandbox (each gets a writable overlay on top). /usr is bound from the
 * host read-only at run time, so sh, bash, python3 and coreutils work. Only an allowlist of
 * /etc is copied, and passwd/group/hosts are generated: no /etc/shadow, /root, /home, /run,
 * ssh keys, host sockets or server data ever enter it.
 */
import { cp, lstat, mkdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** /etc entries copied from the host (public, needed by common programs). */
const ETC_ALLOWLIST = [
  "alternatives",
  "bash.bashrc",
  "ca-certificates.conf",
  "debian_version",
  "host.conf",
  "inputrc",
  "issue",
  "ld.so.cache",
  "ld.so.conf",
  "ld.so.conf.d",
  "locale.alias",
  "localtime",
  "login.defs",
  "mime.types",
  "os-release",
  "profile",
  "profile.d",
  "protocols",
  "python3",
  "python3.11",
  "services",
  "shells",
  "ssl/certs",
  "ssl/openssl.cnf",
  "timezone",
  "xdg",
];

const GENERATED: Record<string, string> = {
  passwd: "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
  group: "root:x:0:\nnogroup:x:65534:\n",
  hosts: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
  hostname: "sandbox\n",
  "resolv.conf": "",
  "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
  environment: "",
};

/** Top-level directories of the root (mount points and writable homes). */
const DIRS = [
  "usr",
  "etc",
  "tmp",
  "root",
  "home",
  "var/tmp",
  "opt",
  "srv",
  "mnt",
  "proc",
  "dev",
  "sys",
  ".sbx",
  "work",
];
const USR_LINKS = { bin: "usr/bin", sbin: "usr/sbin", lib: "usr/lib", lib64: "usr/lib64" };

/**
 * Commands users expect that Debian only provides through optional packages, added in
 * /opt/sbx/bin (last on PATH) when the host has the target but not the command itself.
 */
const FALLBACK_COMMANDS: Record<string, string> = { python: "/usr/bin/python3", pip: "/usr/bin/pip3" };

export const IMAGE_VERSION = "2";

/**
 * Builds the skeleton at `<dir>/rootfs` once (atomically: build aside, then rename),
 * owned by `uid:gid` so that the sandbox's root user owns its own /etc, /root, …
 */
export async function ensureDefaultImage(dir: string, uid: number, gid: number): Promise<string> {
  const rootfs = join(dir, `rootfs-v${IMAGE_VERSION}`);
  if (await exists(rootfs)) return rootfs;
  const staging = `${rootfs}.building-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  for (const d of DIRS) await mkdir(join(staging, d), { recursive: true });
  for (const [name, target] of Object.entries(USR_LINKS)) {
    if (await exists(join("/", target))) await symlink(target, join(staging, name));
  }
  for (const entry of ETC_ALLOWLIST) {
    const source = join("/etc", entry);
    if (!(await exists(source))) continue;
    await mkdir(join(staging, "etc", entry, ".."), { recursive: true });
    await cp(source, join(staging, "etc", entry), { recursive: true, verbatimSymlinks: true, errorOnExist: false });
  }
  for (const [name, content] of Object.entries(GENERATED)) await writeFile(join(staging, "etc", name), content);
  await mkdir(join(staging, "opt/sbx/bin"), { recursive: true });
  for (const [name, target] of Object.entries(FALLBACK_COMMANDS)) {
    if ((await exists(target)) && !(await exists(join("/usr/bin", name)))) {
      await symlink(target, join(staging, "opt/sbx/bin", name));
    }
  }
  await chownTree(staging, uid, gid);
  await rename(staging, rootfs);
  return rootfs;
}

async function chownTree(root: string, uid: number, gid: number): Promise<void> {
  const { readdir, lchown } = await import("node:fs/promises");
  await lchown(root, uid, gid);
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const path = join(root, entry.name);
    if (entry.isDirectory()) await chownTree(path, uid, gid);
    else await lchown(path, uid, gid);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
