/**
 * Test support: the images the real server's tests and its conformance run pull, built here
 * from Debian's packages (as OCI layouts, by oci-layout.ts, pushed by registry.ts):
 *
 * - a busybox-static-only root (no python, no bash: /bin/sh is busybox), offline;
 * - one with a non-root `User` and files owned by uid 1234, offline;
 * - a multi-platform index (this host's platform and another), offline;
 * - a minimal Debian root: `mmdebstrap --variant=minbase` from the Debian mirror apt already
 *   uses (about 75 MB; 15-50 s to build here), built once per Debian point release and
 *   architecture and kept in node_modules/.cache/sbx-test-images (SBX_TEST_CACHE elsewhere),
 *   so a CI run builds it once whichever test files need it.
 */
import { execFile, execFileSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { ImagePlatform } from "@sbx/server-kit";
import { hostPlatform } from "../platform.js";
import { busyboxLayer, type TestImage } from "./oci-layout.js";
import type { TarEntry } from "./tar-layers.js";

const run = promisify(execFile);

export const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Debian's static busybox alone, for this host's platform. */
export function busyboxImage(): TestImage {
  return { layers: [busyboxLayer()], platform: hostPlatform(), config: { Env: [PATH_ENV], Cmd: ["sh"] } };
}

/** The uid (and gid) of the non-root image's user, "app". */
export const APP_UID = 1234;

/**
 * Busybox, and a home of user "app" (uid and gid 1234) holding files of theirs, the image's
 * `User` and `WorkingDir` set to them.
 */
export function nonRootImage(): TestImage {
  const owned = { uid: APP_UID, gid: APP_UID };
  return {
    layers: [
      busyboxLayer(),
      [
        { name: "home/", type: "directory", mode: 0o755 },
        { name: "home/app/", type: "directory", mode: 0o750, ...owned },
        { name: "home/app/notes.txt", content: "mine\n", mode: 0o640, ...owned },
        { name: "home/app/bin/", type: "directory", mode: 0o755, ...owned },
        { name: "home/app/bin/hello", content: "#!/bin/sh\necho hello from app\n", mode: 0o755, ...owned },
      ],
    ],
    platform: hostPlatform(),
    config: { User: "app", WorkingDir: "/home/app", Env: [PATH_ENV, "HOME=/home/app"], Cmd: ["sh"] },
  };
}

/** A platform that is not this host's (arm64 on amd64 hosts, amd64 elsewhere). */
export function otherPlatform(): ImagePlatform {
  return hostPlatform().architecture === "amd64"
    ? { os: "linux", architecture: "arm64", variant: "v8" }
    : { os: "linux", architecture: "amd64" };
}

/**
 * The images of a multi-platform index: this host's (busybox, and /etc/platform naming it),
 * then another platform's (only that file: a pull for this host must never choose it).
 */
export function multiPlatformImages(): TestImage[] {
  const platformFile = (p: ImagePlatform): TarEntry[] => [
    { name: "etc/", type: "directory", mode: 0o755 },
    { name: "etc/platform", content: `${p.os}/${p.architecture}\n` },
  ];
  const host = hostPlatform();
  const other = otherPlatform();
  return [
    { layers: [busyboxLayer(), platformFile(host)], platform: host, config: { Env: [PATH_ENV] } },
    { layers: [platformFile(other)], platform: other, config: { Env: [PATH_ENV] } },
  ];
}

/** A minimal Debian root (see debianRootTar) as a one-layer image for this host. */
export async function debianImage(): Promise<TestImage> {
  const tar = readFileSync(await debianRootTar());
  return { layers: [tar], platform: hostPlatform(), config: { Env: [PATH_ENV], Cmd: ["bash"] } };
}

const CACHE_DIR =
  process.env.SBX_TEST_CACHE ??
  fileURLToPath(new URL("../../../../../node_modules/.cache/sbx-test-images/", import.meta.url));

/** The Debian release this host's apt uses: its mirror, codename and point release. */
function aptDebian(): { mirror: string; codename: string; version: string } {
  const codename = /^VERSION_CODENAME=(.*)$/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1]?.trim();
  if (!codename) throw new Error("/etc/os-release names no VERSION_CODENAME: the Debian test image needs Debian");
  const targets = execFileSync(
    "apt-get",
    ["indextargets", "--format", "$(REPO_URI) $(VERSION)", "Created-By: Packages", `Codename: ${codename}`].concat([
      "Label: Debian",
      "Component: main",
    ]),
    { encoding: "utf8" },
  );
  const [mirror, version] = (targets.split("\n")[0] ?? "").split(" ");
  if (!mirror) throw new Error(`apt has no Debian ${codename} main repository (see /etc/apt/sources.list*)`);
  return { mirror, codename, version: version || "unknown" };
}

/**
 * The path of a tarball of a minimal Debian root (mmdebstrap minbase, merged /usr, without
 * docs, man pages and locales), built from the Debian mirror apt uses, or the one already
 * cached for this Debian point release and architecture. Concurrent callers (test files run
 * in parallel) build it once: the first holds a lock file, the others wait for its result.
 */
export async function debianRootTar(): Promise<string> {
  const { mirror, codename, version } = aptDebian();
  const arch = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
  const path = join(CACHE_DIR, `debian-${codename}-${version}-${arch}-minbase.tar`);
  if (existsSync(path)) return path;
  mkdirSync(CACHE_DIR, { recursive: true });
  await withLock(`${path}.lock`, async () => {
    if (existsSync(path)) return;
    const partial = `${path}.${process.pid}.partial`;
    try {
      await run(
        "mmdebstrap",
        ["--variant=minbase", "--mode=root", "--format=tar", "--quiet"]
          .concat(["--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"])
          .concat(["doc", "man", "locale", "info"].map((dir) => `--dpkgopt=path-exclude=/usr/share/${dir}/*`))
          .concat([codename, partial, mirror]),
        { maxBuffer: 16 << 20 },
      );
      renameSync(partial, path);
    } finally {
      rmSync(partial, { force: true });
    }
  });
  return path;
}

/** Runs `work` holding the lock file `lock` (its holder's pid inside; a dead holder's lock is taken over). */
async function withLock(lock: string, work: () => Promise<void>): Promise<void> {
  for (;;) {
    try {
      const fd = openSync(lock, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = Number(readIfThere(lock) || "0");
    if (holder > 0 && !alive(holder)) rmSync(lock, { force: true });
    else await new Promise((resolve) => setTimeout(resolve, 250));
  }
  try {
    await work();
  } finally {
    rmSync(lock, { force: true });
  }
}

function readIfThere(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
