/**
 * Test support: images built offline as OCI image layouts (index.json, blobs/sha256/…), which
 * skopeo then pushes to a test registry or packs as an archive.
 */
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { gzipSync, zstdCompressSync } from "node:zlib";
import type { ImagePlatform } from "@sbx/server-kit";
import { type TarEntry, tarOf } from "./tar-layers.js";

export interface TestImage {
  /** Layers, bottom first, as tar entries (or tars already made). */
  readonly layers: readonly (readonly TarEntry[] | Buffer)[];
  readonly platform?: ImagePlatform;
  readonly config?: { Env?: string[]; User?: string; WorkingDir?: string; Cmd?: string[]; Entrypoint?: string[] };
  /** How layers are stored (default gzip). */
  readonly compression?: "gzip" | "zstd" | "none";
  /** Makes each layer's blob instead (a crafted one; its media type says gzip). */
  readonly blobOf?: (tar: Buffer) => Buffer;
}

export interface BuiltImage {
  readonly manifestDigest: string;
  readonly configDigest: string;
  readonly diffIds: readonly string[];
  /** The layer blobs' digests and sizes, bottom first. */
  readonly blobs: readonly { digest: string; size: number }[];
}

const sha256 = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

/** Writes `bytes` as a blob of the layout in `dir`; returns its descriptor fields. */
function writeBlob(dir: string, bytes: Uint8Array): { digest: string; size: number } {
  const digest = sha256(bytes);
  const blobs = join(dir, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(blobs, digest.slice(7)), bytes);
  return { digest, size: bytes.length };
}

function addToIndex(dir: string, descriptor: Record<string, unknown>): void {
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const path = join(dir, "index.json");
  const index = existsSync(path)
    ? (JSON.parse(readFileSync(path, "utf8")) as { manifests: Record<string, unknown>[] })
    : { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [] };
  const name = (descriptor.annotations as Record<string, string> | undefined)?.["org.opencontainers.image.ref.name"];
  index.manifests = index.manifests.filter(
    (m) => (m.annotations as Record<string, string> | undefined)?.["org.opencontainers.image.ref.name"] !== name,
  );
  index.manifests.push(descriptor);
  writeFileSync(path, JSON.stringify(index));
}

/** Writes one image's blobs (config, layers, manifest) into the layout in `dir`. */
export async function writeImageBlobs(dir: string, image: TestImage): Promise<BuiltImage> {
  const tars = await Promise.all(image.layers.map((l) => (Buffer.isBuffer(l) ? l : tarOf(l as TarEntry[]))));
  const compression = image.blobOf !== undefined ? "gzip" : (image.compression ?? "gzip");
  const compress = image.blobOf ?? { gzip: gzipSync, zstd: zstdCompressSync, none: (tar: Buffer) => tar }[compression];
  const blobs = tars.map((tar) => writeBlob(dir, compress(tar)));
  const diffIds = tars.map(sha256);
  const platform = image.platform ?? { os: "linux", architecture: "amd64" };
  const config = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
    config: { Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], ...image.config },
    rootfs: { type: "layers", diff_ids: diffIds },
    history: tars.map(() => ({ created_by: "sbx test" })),
  };
  const configBlob = writeBlob(dir, Buffer.from(JSON.stringify(config)));
  const manifest = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...configBlob },
    layers: blobs.map((b) => ({
      mediaType: `application/vnd.oci.image.layer.v1.tar${compression === "none" ? "" : `+${compression}`}`,
      ...b,
    })),
  };
  const manifestBlob = writeBlob(dir, Buffer.from(JSON.stringify(manifest)));
  return { manifestDigest: manifestBlob.digest, configDigest: configBlob.digest, diffIds, blobs };
}

/** Adds `image` to the layout in `dir` under `tag`. */
export async function writeOciImage(dir: string, tag: string, image: TestImage): Promise<BuiltImage> {
  const built = await writeImageBlobs(dir, image);
  const size = readFileSync(join(dir, "blobs", "sha256", built.manifestDigest.slice(7))).length;
  addToIndex(dir, {
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: built.manifestDigest,
    size,
    annotations: { "org.opencontainers.image.ref.name": tag },
  });
  return built;
}

/** Adds a multi-platform index of `images` to the layout in `dir` under `tag`. */
export async function writeOciIndex(
  dir: string,
  tag: string,
  images: readonly TestImage[],
): Promise<{ indexDigest: string; images: BuiltImage[] }> {
  const built: BuiltImage[] = [];
  const manifests: Record<string, unknown>[] = [];
  for (const image of images) {
    const b = await writeImageBlobs(dir, image);
    built.push(b);
    manifests.push({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: b.manifestDigest,
      size: readFileSync(join(dir, "blobs", "sha256", b.manifestDigest.slice(7))).length,
      platform: image.platform ?? { os: "linux", architecture: "amd64" },
    });
  }
  const index = { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests };
  const blob = writeBlob(dir, Buffer.from(JSON.stringify(index)));
  addToIndex(dir, {
    mediaType: "application/vnd.oci.image.index.v1+json",
    ...blob,
    annotations: { "org.opencontainers.image.ref.name": tag },
  });
  return { indexDigest: blob.digest, images: built };
}

/**
 * A root whose only program is Debian's static busybox (busybox-static): every applet it has as
 * a symlink to it, /bin/sh among them, and nothing else — no python, no bash, no libc. Its
 * /etc/passwd has root and "app" (1234).
 */
export function busyboxLayer(): TarEntry[] {
  const busybox = staticBusybox();
  const applets = execFileSync(BUSYBOX, ["--list-full"], { encoding: "utf8" }).split("\n").filter(Boolean);
  const dirs = [...new Set(applets.flatMap((path) => ancestors(path)))].sort();
  return [
    ...dirs.map((dir): TarEntry => ({ name: `${dir}/`, type: "directory", mode: 0o755 })),
    { name: "bin/busybox", content: busybox, mode: 0o755 },
    ...applets
      .filter((path) => path !== "bin/busybox")
      .map((path): TarEntry => ({ name: path, type: "symlink", linkname: "/bin/busybox" })),
    { name: "etc/", type: "directory", mode: 0o755 },
    { name: "etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n" },
    { name: "etc/group", content: "root:x:0:\napp:x:1234:\n" },
    { name: "root/", type: "directory", mode: 0o700 },
    { name: "tmp/", type: "directory", mode: 0o1777 },
  ];
}

const BUSYBOX = "/usr/bin/busybox";

/** "usr/bin/awk" → ["usr", "usr/bin"]. */
const ancestors = (path: string): string[] => {
  const parent = dirname(path);
  return parent === "." ? [] : [...ancestors(parent), parent];
};

/**
 * Debian's busybox-static binary; refused when this machine's busybox is the dynamically linked
 * one (Debian's "busybox" package): an image of it would need a libc it does not hold.
 */
function staticBusybox(): Buffer {
  const elf = readFileSync(BUSYBOX);
  // ELF64 little-endian program headers: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
  const [phoff, phentsize, phnum] = [Number(elf.readBigUInt64LE(0x20)), elf.readUInt16LE(0x36), elf.readUInt16LE(0x38)];
  for (let i = 0; i < phnum; i++) {
    if (elf.readUInt32LE(phoff + i * phentsize) === PT_INTERP) {
      throw new Error(`${BUSYBOX} is dynamically linked: install busybox-static (scripts/test-deps.sh does)`);
    }
  }
  return elf;
}

const PT_INTERP = 3;

/** A layer of `bytes` bytes of one file whose content does not compress (for resumes, progress, quotas). */
export function randomFileLayer(name: string, bytes: number): TarEntry[] {
  return [{ name, content: randomBytes(bytes) }];
}
