/**
 * The default image, in two parts built once from the host's own system:
 *
 * - the lower layer, shared read-only by every sandbox and owned by root: mount points, the
 *   /bin → usr/bin style links and the image's fallback commands. Inside a sandbox its files
 *   belong to the overflow uid ("nobody"), as the host's /usr does.
 * - the layer template: what each sandbox's own disk starts with (the overlay's upper dir with
 *   /etc, /root, /home, /tmp, /work, /usr/local, …, and its empty work dir), copied in when
 *   the disk is made. Its owners are canonical, as the image store's are (`layerIdBase`: the
 *   image's root), so through the idmapped upper (root-mount.ts) the sandbox's root owns and
 *   can change them, whichever block the sandbox has.
 *
 * Only an allowlist of /etc is copied, and passwd/group/hosts are generated: no /etc/shadow,
 * /root, /home, /run, ssh keys, host sockets or server data ever enter it. /usr is bound from
 * the host read-only at run time, but only the subtrees programs need (`USR_DIRS`): never
 * /usr/local or /usr/etc, where a host keeps its own configuration (an npmrc with a registry
 * token, say).
 */
import { execFile } from "node:child_process";
import { chmod, chown, cp, lstat, mkdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

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

/**
 * The subtrees of the host's /usr bound read-only into every sandbox (those that exist):
 * programs, libraries, their data and headers, all installed by packages.
 */
export const USR_DIRS = ["bin", "sbin", "lib", "lib32", "lib64", "libx32", "libexec", "share", "include"] as const;

/** Mount points of the lower layer (root's, never written). */
const LOWER_DIRS = ["usr", "proc", "dev", "sys", ".sbx", "opt/sbx/bin"];
const USR_LINKS = { bin: "usr/bin", sbin: "usr/sbin", lib: "usr/lib", lib64: "usr/lib64" };

/** The sandbox's own directories, with their modes (all given to its uid). */
const SKELETON_DIRS: Record<string, number> = {
  etc: 0o755,
  root: 0o700,
  home: 0o755,
  tmp: 0o1777,
  var: 0o755,
  "var/tmp": 0o1777,
  opt: 0o755,
  srv: 0o755,
  mnt: 0o755,
  work: 0o755,
  "usr/local": 0o755,
  "usr/local/bin": 0o755,
  "usr/local/sbin": 0o755,
  "usr/local/lib": 0o755,
  "usr/local/share": 0o755,
  "usr/local/include": 0o755,
  "usr/local/etc": 0o755,
};

/**
 * Commands users expect that Debian only provides through optional packages, added in
 * /opt/sbx/bin (last on PATH) when the host has the target but not the command itself.
 */
const FALLBACK_COMMANDS: Record<string, string> = { python: "/usr/bin/python3", pip: "/usr/bin/pip3" };

export const IMAGE_VERSION = "4";

export interface DefaultImage {
  /** The shared lower layer (root's). */
  readonly lower: string;
  /** What a sandbox's disk starts with: `upper/` and `work/`, owned canonically. */
  readonly layer: string;
}

/** The default image's dir name: its layer template's owners depend on the layer id base. */
export const defaultImageName = (layerIdBase: number): string => `default-v${IMAGE_VERSION}-${layerIdBase}`;

/** Builds the image under `dir` once (atomically: build aside, then rename). */
export async function ensureDefaultImage(dir: string, layerIdBase: number): Promise<DefaultImage> {
  const image = join(dir, defaultImageName(layerIdBase));
  const built = { lower: join(image, "lower"), layer: join(image, "layer") };
  if (await exists(image)) return built;
  const staging = `${image}.building-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await buildLower(join(staging, "lower"));
  await buildSkeleton(join(staging, "layer", "upper"));
  await mkdir(join(staging, "layer", "work"), { mode: 0o700 });
  // Root's, whatever the umask or the host's files said: the lower is no sandbox's.
  await run("chown", ["-hR", "0:0", staging]);
  // The layer template is the image's root's (canonical ids), but for /usr, which stays host
  // root's (bound over from the host, read-only; only /usr/local is the sandbox's).
  const upper = join(staging, "layer", "upper");
  await run("chown", ["-hR", `${layerIdBase}:${layerIdBase}`, upper, join(staging, "layer", "work")]);
  await chown(join(upper, "usr"), 0, 0);
  await chmod(staging, 0o755);
  await rename(staging, image);
  return built;
}

async function buildLower(lower: string): Promise<void> {
  for (const d of LOWER_DIRS) await mkdir(join(lower, d), { recursive: true, mode: 0o755 });
  for (const d of USR_DIRS) {
    if (await exists(join("/usr", d))) await mkdir(join(lower, "usr", d), { mode: 0o755 });
  }
  for (const [name, target] of Object.entries(USR_LINKS)) {
    if (await exists(join("/", target))) await symlink(target, join(lower, name));
  }
  for (const [name, target] of Object.entries(FALLBACK_COMMANDS)) {
    if ((await exists(target)) && !(await exists(join("/usr/bin", name)))) {
      await symlink(target, join(lower, "opt/sbx/bin", name));
    }
  }
}

async function buildSkeleton(skeleton: string): Promise<void> {
  await mkdir(skeleton, { recursive: true, mode: 0o755 });
  for (const [d, mode] of Object.entries(SKELETON_DIRS)) {
    await mkdir(join(skeleton, d), { recursive: true });
    await chmod(join(skeleton, d), mode);
  }
  for (const entry of ETC_ALLOWLIST) {
    const source = join("/etc", entry);
    if (!(await exists(source))) continue;
    await mkdir(join(skeleton, "etc", entry, ".."), { recursive: true });
    await cp(source, join(skeleton, "etc", entry), { recursive: true, verbatimSymlinks: true, errorOnExist: false });
  }
  for (const [name, content] of Object.entries(GENERATED)) {
    await writeFile(join(skeleton, "etc", name), content, { mode: 0o644 });
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
