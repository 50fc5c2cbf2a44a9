/**
 * The JSON documents of an image (OCI image spec and Docker's schema 2): indexes (manifest
 * lists), manifests and configs, parsed and checked. Anything malformed is "invalid"; a
 * well-formed document of a kind the store cannot use (Docker schema 1, a foreign or
 * non-distributable layer, an artifact that is not an image) is "unsupported".
 */
import { type ImageConfig, type ImagePlatform, imageStoreError } from "../engine/image-store.js";
import { isDigest } from "./digest.js";

export const MEDIA_TYPES = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

/** What a manifest request accepts (schema 1 too, so that it can be refused by name). */
export const MANIFEST_ACCEPT = [
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.dockerList,
  MEDIA_TYPES.dockerManifest,
  `${MEDIA_TYPES.dockerSchema1Signed};q=0.1`,
  `${MEDIA_TYPES.dockerSchema1};q=0.1`,
].join(", ");

/** Layer media types the store unpacks (the compression is found from the bytes themselves). */
const LAYER_TYPES = new Set([
  "application/vnd.oci.image.layer.v1.tar",
  "application/vnd.oci.image.layer.v1.tar+gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd",
  "application/vnd.docker.image.rootfs.diff.tar",
  "application/vnd.docker.image.rootfs.diff.tar.gzip",
]);
const CONFIG_TYPES = new Set<string>([MEDIA_TYPES.ociConfig, MEDIA_TYPES.dockerConfig]);

/** The most a manifest or index may weigh (as containerd and distribution limit them). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** The most an image config may weigh. */
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;
/**
 * The most layers an image may have: what an overlay mount stacks (the kernel's limit of lower
 * dirs). More could never run, and each is a download, an unpack and a directory.
 */
export const MAX_IMAGE_LAYERS = 500;

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly platform?: ImagePlatform | undefined;
  readonly annotations?: Readonly<Record<string, string>> | undefined;
}

export interface ImageIndex {
  readonly kind: "index";
  readonly manifests: readonly Descriptor[];
}

export interface ImageManifest {
  readonly kind: "manifest";
  readonly mediaType: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
}

export interface ParsedConfig {
  readonly platform: ImagePlatform;
  readonly config: ImageConfig;
  /** The uncompressed digests of the layers, bottom first. */
  readonly diffIds: readonly string[];
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function parseJson(bytes: Uint8Array, what: string): Json {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw imageStoreError("invalid", `${what} is not valid JSON: ${(error as Error).message}`, error);
  }
  if (!isObject(value)) throw imageStoreError("invalid", `${what} is not a JSON object`);
  return value;
}

function parseDescriptor(value: unknown, what: string): Descriptor {
  if (!isObject(value)) throw imageStoreError("invalid", `${what} is not a descriptor object`);
  const { mediaType, digest, size, platform, annotations } = value;
  if (typeof mediaType !== "string" || mediaType === "") throw imageStoreError("invalid", `${what} has no mediaType`);
  if (!isDigest(digest)) throw imageStoreError("invalid", `${what} has a malformed digest ${JSON.stringify(digest)}`);
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw imageStoreError("invalid", `${what} has a malformed size ${JSON.stringify(size)}`);
  }
  return {
    mediaType,
    digest,
    size,
    platform: platform === undefined ? undefined : parsePlatform(platform, what),
    annotations: isObject(annotations)
      ? Object.fromEntries(Object.entries(annotations).filter((e): e is [string, string] => typeof e[1] === "string"))
      : undefined,
  };
}

function parsePlatform(value: unknown, what: string): ImagePlatform {
  if (!isObject(value) || typeof value.os !== "string" || typeof value.architecture !== "string") {
    throw imageStoreError("invalid", `${what} has a malformed platform`);
  }
  return {
    os: value.os,
    architecture: value.architecture,
    variant: typeof value.variant === "string" && value.variant !== "" ? value.variant : undefined,
  };
}

/**
 * A manifest or an index, told apart by its media type (the document's own, else the one the
 * registry sent) and, for OCI documents that name none, by its shape.
 */
export function parseManifestOrIndex(
  bytes: Uint8Array,
  what: string,
  contentType?: string,
): ImageIndex | ImageManifest {
  const doc = parseJson(bytes, what);
  const declared = typeof doc.mediaType === "string" ? doc.mediaType : undefined;
  const mediaType = declared ?? contentType?.split(";")[0]?.trim();
  if (
    doc.schemaVersion === 1 ||
    mediaType === MEDIA_TYPES.dockerSchema1 ||
    mediaType === MEDIA_TYPES.dockerSchema1Signed
  ) {
    throw imageStoreError(
      "unsupported",
      `${what} is a Docker schema 1 manifest, which is deprecated and unsupported: push the image again with a current Docker or skopeo`,
    );
  }
  if (doc.schemaVersion !== 2)
    throw imageStoreError("invalid", `${what} has schemaVersion ${JSON.stringify(doc.schemaVersion)}, not 2`);
  const isIndex =
    mediaType === MEDIA_TYPES.ociIndex ||
    mediaType === MEDIA_TYPES.dockerList ||
    ((mediaType === undefined || mediaType === "application/json") && Array.isArray(doc.manifests));
  const isManifest =
    mediaType === MEDIA_TYPES.ociManifest ||
    mediaType === MEDIA_TYPES.dockerManifest ||
    ((mediaType === undefined || mediaType === "application/json") && isObject(doc.config));
  if (isIndex) {
    if (!Array.isArray(doc.manifests)) throw imageStoreError("invalid", `${what} is an index without a manifests list`);
    return { kind: "index", manifests: doc.manifests.map((m, i) => parseDescriptor(m, `${what} manifests[${i}]`)) };
  }
  if (isManifest) {
    if (!Array.isArray(doc.layers)) throw imageStoreError("invalid", `${what} has no layers list`);
    const config = parseDescriptor(doc.config, `${what} config`);
    if (!CONFIG_TYPES.has(config.mediaType)) {
      throw imageStoreError("unsupported", `${what} is not a container image (its config is ${config.mediaType})`);
    }
    const layers = doc.layers.map((l, i) => parseDescriptor(l, `${what} layers[${i}]`));
    for (const layer of layers) {
      if (!LAYER_TYPES.has(layer.mediaType)) {
        throw imageStoreError(
          "unsupported",
          `${what} has a layer of media type ${layer.mediaType}, which the store cannot unpack`,
        );
      }
    }
    return { kind: "manifest", mediaType: mediaType ?? MEDIA_TYPES.ociManifest, config, layers };
  }
  throw imageStoreError("unsupported", `${what} has the unknown media type ${JSON.stringify(mediaType ?? "(none)")}`);
}

const stringList = (value: unknown): string[] | undefined =>
  Array.isArray(value) && value.every((v) => typeof v === "string") ? (value as string[]) : undefined;

/** An image config: the platform, what processes get (Env, WorkingDir, User, …) and the diff ids. */
export function parseConfig(bytes: Uint8Array, what: string): ParsedConfig {
  const doc = parseJson(bytes, what);
  if (typeof doc.os !== "string" || typeof doc.architecture !== "string") {
    throw imageStoreError("invalid", `${what} does not say its os and architecture`);
  }
  const rootfs = doc.rootfs;
  if (!isObject(rootfs) || rootfs.type !== "layers" || !Array.isArray(rootfs.diff_ids)) {
    throw imageStoreError("invalid", `${what} has no rootfs of type "layers" with diff_ids`);
  }
  if (rootfs.diff_ids.length > MAX_IMAGE_LAYERS) {
    throw imageStoreError(
      "unsupported",
      `${what} lists ${rootfs.diff_ids.length} layers; the store takes images of up to ${MAX_IMAGE_LAYERS} (the layers an overlay mount stacks)`,
    );
  }
  const diffIds = rootfs.diff_ids.map((d, i) => {
    if (!isDigest(d)) throw imageStoreError("invalid", `${what} rootfs.diff_ids[${i}] is not a digest`);
    return d;
  });
  const c = isObject(doc.config) ? doc.config : {};
  const nonEmpty = (v: unknown) => (typeof v === "string" && v !== "" ? v : undefined);
  return {
    platform: {
      os: doc.os,
      architecture: doc.architecture,
      variant: nonEmpty(doc.variant),
    },
    config: {
      env: stringList(c.Env) ?? [],
      workingDir: nonEmpty(c.WorkingDir),
      user: nonEmpty(c.User),
      entrypoint: stringList(c.Entrypoint),
      cmd: stringList(c.Cmd),
    },
    diffIds,
  };
}

/** The config's diff ids must pair with the manifest's layers, one to one. */
export function checkLayersMatch(manifest: ImageManifest, config: ParsedConfig, what: string): void {
  if (manifest.layers.length !== config.diffIds.length) {
    throw imageStoreError(
      "invalid",
      `${what} has ${manifest.layers.length} layers but its config lists ${config.diffIds.length} diff ids`,
    );
  }
}

/** An image found in a registry or an archive, ready for its layers to be fetched. */
export interface ResolvedImage {
  /** The digest of the image manifest. */
  readonly manifestDigest: string;
  /** Every manifest and index digest that led to it (an index's too). */
  readonly digests: readonly string[];
  readonly configDigest: string;
  readonly config: ParsedConfig;
  /** The layer blobs, bottom first, paired with `config.diffIds`. */
  readonly layers: readonly Descriptor[];
}
