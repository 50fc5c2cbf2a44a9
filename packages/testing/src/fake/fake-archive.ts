/**
 * Image archives for the fake's image store: an OCI image layout (tarred) or a `docker save`
 * tarball, read in memory into an image's config and files. The same refusals as the sbx
 * server's store: a blob that does not match its digest (digest-mismatch), a malformed archive
 * or a layer entry that would land outside the image's root (invalid), a layer compression or
 * platform it cannot use (unsupported). Browser-safe: gzip through `DecompressionStream`,
 * digests through WebCrypto.
 */
import { formatImageReference, parseImageReference } from "@sbx/proto";
import { type ImageConfig, type ImagePlatform, ImageStoreError } from "@sbx/server-kit";
import { readTar, type TarEntry, TarError } from "./tar-reader.js";

/** One path of an image's root. */
export type FakeImageFile =
  | { readonly type: "file"; readonly data: Uint8Array; readonly mode: number }
  | { readonly type: "directory"; readonly mode: number }
  | { readonly type: "symlink"; readonly target: string };

/** An image's root: absolute, normalized paths ("/usr/bin/python3") and what is there. */
export type FakeImageFiles = ReadonlyMap<string, FakeImageFile>;

export interface ArchiveImage {
  /** Canonical references the archive names the image by. */
  readonly refs: readonly string[];
  /** Digest of its manifest. */
  readonly digest: string;
  readonly configDigest: string;
  readonly config: ImageConfig;
  readonly platform: ImagePlatform;
  /** Diff ids, bottom first. */
  readonly layers: readonly string[];
  readonly files: FakeImageFiles;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const invalid = (message: string) => new ImageStoreError("invalid", message);

export async function sha256(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return `sha256:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** "a/./b/../c" → "/a/c"; undefined when it climbs above the root. */
export function confinedPath(name: string): string | undefined {
  const parts: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length === 0) return undefined;
      parts.pop();
    } else parts.push(part);
  }
  return `/${parts.join("/")}`;
}

const underOrAt = (path: string, dir: string) => path === dir || path.startsWith(dir === "/" ? "/" : `${dir}/`);

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  try {
    const value = JSON.parse(decoder.decode(bytes)) as unknown;
    if (typeof value === "object" && value !== null) return value as Record<string, unknown>;
  } catch {}
  throw invalid(`the archive's ${what} is not valid JSON`);
}

const strings = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];

/** The archive's files by name ("./" and leading "/" dropped). */
function byName(entries: readonly TarEntry[]): Map<string, TarEntry> {
  const files = new Map<string, TarEntry>();
  for (const entry of entries) files.set(entry.name.replace(/^(\.\/|\/)+/, ""), entry);
  return files;
}

function blobName(digest: unknown): string {
  if (typeof digest !== "string" || !/^sha256:[a-f0-9]{64}$/.test(digest)) {
    throw invalid(`the archive names a blob by ${JSON.stringify(digest)}, not a sha256 digest`);
  }
  return `blobs/sha256/${digest.slice("sha256:".length)}`;
}

/** A blob of the archive, checked against the digest it is named by. */
async function blob(files: Map<string, TarEntry>, digest: unknown): Promise<Uint8Array> {
  const name = blobName(digest);
  const entry = files.get(name);
  if (entry?.type !== "file") throw invalid(`the archive has no blob ${digest as string}`);
  if ((await sha256(entry.data)) !== digest) {
    throw new ImageStoreError(
      "digest-mismatch",
      `blob ${digest as string} of the archive does not match its digest: refused, nothing kept`,
    );
  }
  return entry.data;
}

async function gunzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A layer blob as a tar: gzip is unpacked; zstd and anything else are not supported. */
async function layerTar(data: Uint8Array): Promise<Uint8Array> {
  if (data[0] === 0x1f && data[1] === 0x8b) {
    try {
      return await gunzip(data);
    } catch (error) {
      throw invalid(`a layer is not valid gzip: ${(error as Error).message}`);
    }
  }
  if (data[0] === 0x28 && data[1] === 0xb5 && data[2] === 0x2f && data[3] === 0xfd) {
    throw new ImageStoreError("unsupported", "a layer is zstd-compressed, which this store cannot unpack");
  }
  return data;
}

function tarEntries(data: Uint8Array, what: string): TarEntry[] {
  try {
    return readTar(data);
  } catch (error) {
    if (error instanceof TarError) throw invalid(`${what}: ${error.message}`);
    throw error;
  }
}

/**
 * Applies one layer on top of `root` (the layers below it): its whiteouts remove what is
 * below, then its entries are added. Every name is confined to the root.
 */
function applyLayer(root: Map<string, FakeImageFile>, entries: readonly TarEntry[]): void {
  const own = new Map<string, FakeImageFile>();
  for (const entry of entries) {
    const path = confinedPath(entry.name);
    if (path === undefined)
      throw invalid(`a layer entry ${JSON.stringify(entry.name)} would land outside the image's root`);
    const base = path.slice(path.lastIndexOf("/") + 1);
    const dir = path.slice(0, path.lastIndexOf("/")) || "/";
    if (base === ".wh..wh..opq") {
      for (const below of [...root.keys()]) if (below !== dir && underOrAt(below, dir)) root.delete(below);
      continue;
    }
    if (base.startsWith(".wh.")) {
      const gone = `${dir === "/" ? "" : dir}/${base.slice(4)}`;
      for (const below of [...root.keys()]) if (underOrAt(below, gone)) root.delete(below);
      continue;
    }
    if (path === "/") continue;
    if (entry.type === "file") own.set(path, { type: "file", data: entry.data, mode: entry.mode || 0o644 });
    else if (entry.type === "directory") own.set(path, { type: "directory", mode: entry.mode || 0o755 });
    else if (entry.type === "symlink") own.set(path, { type: "symlink", target: entry.linkName });
    else if (entry.type === "hardlink") {
      const target = confinedPath(entry.linkName);
      const linked = target === undefined ? undefined : (own.get(target) ?? root.get(target));
      if (linked?.type !== "file") {
        throw invalid(
          `a layer's hard link ${JSON.stringify(entry.name)} points at ${JSON.stringify(entry.linkName)}, no file of the image`,
        );
      }
      own.set(path, linked);
    }
    // Devices, FIFOs and the like: an image's root has no use for them here.
  }
  for (const [path, file] of own) {
    // A file replacing a directory replaces what was under it too.
    if (file.type !== "directory") for (const below of [...root.keys()]) if (underOrAt(below, path)) root.delete(below);
    root.set(path, file);
  }
}

function configOf(json: Record<string, unknown>): { config: ImageConfig; platform: ImagePlatform; diffIds: string[] } {
  const inner = (typeof json.config === "object" && json.config !== null ? json.config : {}) as Record<string, unknown>;
  const rootfs = (typeof json.rootfs === "object" && json.rootfs !== null ? json.rootfs : {}) as Record<
    string,
    unknown
  >;
  const workingDir = typeof inner.WorkingDir === "string" && inner.WorkingDir !== "" ? inner.WorkingDir : undefined;
  if (workingDir !== undefined && !workingDir.startsWith("/")) {
    throw invalid(`the image's WorkingDir ${JSON.stringify(workingDir)} is not absolute`);
  }
  return {
    config: {
      env: strings(inner.Env),
      workingDir,
      user: typeof inner.User === "string" && inner.User !== "" ? inner.User : undefined,
      entrypoint: Array.isArray(inner.Entrypoint) ? strings(inner.Entrypoint) : undefined,
      cmd: Array.isArray(inner.Cmd) ? strings(inner.Cmd) : undefined,
    },
    platform: {
      os: typeof json.os === "string" ? json.os : "linux",
      architecture: typeof json.architecture === "string" ? json.architecture : "",
      variant: typeof json.variant === "string" ? json.variant : undefined,
    },
    diffIds: strings(rootfs.diff_ids),
  };
}

/** The image's root from its layers, each checked against the config's diff ids. */
async function rootOf(layers: readonly Uint8Array[], diffIds: readonly string[]): Promise<Map<string, FakeImageFile>> {
  if (layers.length !== diffIds.length) {
    throw invalid(`the image has ${layers.length} layers but its config lists ${diffIds.length} diff ids`);
  }
  const root = new Map<string, FakeImageFile>();
  for (const [i, layer] of layers.entries()) {
    const tar = await layerTar(layer);
    if ((await sha256(tar)) !== diffIds[i]) {
      throw new ImageStoreError(
        "digest-mismatch",
        `layer ${i + 1} does not match its diff id ${diffIds[i]}: refused, nothing kept`,
      );
    }
    applyLayer(root, tarEntries(tar, `layer ${i + 1}`));
  }
  return root;
}

function canonical(ref: string): string | undefined {
  try {
    return formatImageReference(parseImageReference(ref));
  } catch {
    return undefined;
  }
}

/** A `docker save` archive: manifest.json names the config, the layers and the tags. */
async function dockerSave(files: Map<string, TarEntry>, manifestJson: Uint8Array): Promise<ArchiveImage> {
  let list: unknown;
  try {
    list = JSON.parse(decoder.decode(manifestJson));
  } catch {
    throw invalid("the archive's manifest.json is not valid JSON");
  }
  const first = Array.isArray(list) ? (list[0] as Record<string, unknown> | undefined) : undefined;
  if (!first || typeof first.Config !== "string") throw invalid("the archive's manifest.json names no image");
  const file = (name: unknown) => {
    const entry = typeof name === "string" ? files.get(name) : undefined;
    if (entry?.type !== "file") throw invalid(`the archive has no file ${JSON.stringify(name)}`);
    return entry.data;
  };
  const configBytes = file(first.Config);
  const configDigest = await sha256(configBytes);
  const named = /([a-f0-9]{64})(\.json)?$/.exec(first.Config)?.[1];
  if (named && `sha256:${named}` !== configDigest) {
    throw new ImageStoreError(
      "digest-mismatch",
      `the image config ${first.Config} does not match its digest: refused, nothing kept`,
    );
  }
  const { config, platform, diffIds } = configOf(parseJson(configBytes, "image config"));
  const layers = strings(first.Layers).map(file);
  const root = await rootOf(layers, diffIds);
  // A docker save archive keeps no manifest: its digest is that of the manifest.json entry.
  return {
    refs: strings(first.RepoTags).flatMap((ref) => canonical(ref) ?? []),
    digest: await sha256(JSON.stringify({ config: configDigest, layers: diffIds })),
    configDigest,
    config,
    platform,
    layers: diffIds,
    files: root,
  };
}

/** An OCI image layout: index.json → (an index →) a manifest → the config and the layers. */
async function ociLayout(
  files: Map<string, TarEntry>,
  indexJson: Uint8Array,
  architecture: string,
): Promise<ArchiveImage> {
  const index = parseJson(indexJson, "index.json");
  const descriptors = Array.isArray(index.manifests) ? (index.manifests as Record<string, unknown>[]) : [];
  const top = descriptors[0];
  if (!top) throw invalid("the archive's index.json lists no image");
  const annotations = (top.annotations ?? {}) as Record<string, unknown>;
  const refs = [annotations["io.containerd.image.name"], annotations["org.opencontainers.image.ref.name"]].flatMap(
    (ref) => (typeof ref === "string" && ref.includes("/") ? (canonical(ref) ?? []) : []),
  );
  let digest = top.digest as string;
  let manifest = parseJson(await blob(files, digest), "manifest");
  if (Array.isArray(manifest.manifests)) {
    const choices = manifest.manifests as { digest?: unknown; platform?: { os?: unknown; architecture?: unknown } }[];
    const chosen =
      choices.find((m) => m.platform?.os === "linux" && m.platform.architecture === architecture) ??
      choices.find((m) => m.platform === undefined);
    if (!chosen) throw new ImageStoreError("unsupported", `the archive has no image for linux/${architecture}`);
    digest = chosen.digest as string;
    manifest = parseJson(await blob(files, digest), "manifest");
  }
  const configDigest = (manifest.config as { digest?: unknown } | undefined)?.digest;
  const { config, platform, diffIds } = configOf(parseJson(await blob(files, configDigest), "image config"));
  const layerDigests = Array.isArray(manifest.layers) ? (manifest.layers as { digest?: unknown }[]) : [];
  const layers: Uint8Array[] = [];
  for (const layer of layerDigests) layers.push(await blob(files, layer.digest));
  return {
    refs,
    digest,
    configDigest: configDigest as string,
    config,
    platform,
    layers: diffIds,
    files: await rootOf(layers, diffIds),
  };
}

/** Reads an archive (one tar: an OCI image layout or a `docker save` tarball) into an image. */
export async function readImageArchive(archive: Uint8Array, architecture: string): Promise<ArchiveImage> {
  const files = byName(tarEntries(archive, "the archive"));
  const manifest = files.get("manifest.json");
  if (manifest?.type === "file") return dockerSave(files, manifest.data);
  const index = files.get("index.json");
  if (index?.type === "file" && files.has("oci-layout")) return ociLayout(files, index.data, architecture);
  throw invalid(
    "the archive is neither an OCI image layout (oci-layout, index.json) nor a `docker save` tarball (manifest.json)",
  );
}
