/**
 * The image store seam: where the engine gets images from. The sbx server's store pulls from OCI
 * registries and imports archives into a content-addressed layer store on disk; the fake's keeps
 * images a test registered, in memory. The engine does the RPCs, input checks and the mapping of
 * {@link ImageStoreError} kinds to the client's typed errors; a store does the rest.
 *
 * This module imports nothing at run time, and is exported alone as `@sbx/server-kit/image-store`:
 * a store's worker threads get its error class without loading the engine.
 */
import type { ImageReference } from "@sbx/proto";

/** What an image's config says every process gets unless the sandbox or the call overrides it. */
export interface ImageConfig {
  /** "KEY=value" entries, in the image's order. */
  readonly env: readonly string[];
  /** Absolute; undefined: "/". */
  readonly workingDir?: string | undefined;
  /** "name", "uid", "name:group" or "uid:gid"; undefined: root. */
  readonly user?: string | undefined;
  readonly entrypoint?: readonly string[] | undefined;
  readonly cmd?: readonly string[] | undefined;
}

export interface ImagePlatform {
  readonly os: string;
  /** GOARCH names, as OCI uses them: "amd64", "arm64". */
  readonly architecture: string;
  readonly variant?: string | undefined;
}

const GOARCH: Readonly<Record<string, string>> = {
  x64: "amd64",
  arm64: "arm64",
  arm: "arm",
  ia32: "386",
  ppc64: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
  loong64: "loong64",
  mips: "mips",
  mipsel: "mipsle",
};

/** An architecture as Node names it (`process.arch`: "x64") in GOARCH names ("amd64"); an unknown one as it is. */
export const goArch = (nodeArch: string): string => GOARCH[nodeArch] ?? nodeArch;

export interface ImageRecord {
  /** The store's id: "im-" and the first 20 hex digits of the image's config digest. */
  readonly id: string;
  /**
   * Canonical references this image was pulled or imported as ("docker.io/library/python:3.12-slim"),
   * newest first; empty for an archive that named none.
   */
  readonly refs: readonly string[];
  /** Digest of the manifest the image was made from ("sha256:…"). */
  readonly digest: string;
  /** Bytes the image's layers take in the store (unpacked). */
  readonly sizeBytes: number;
  readonly createdAtMs: number;
  readonly platform: ImagePlatform;
  readonly config: ImageConfig;
  /**
   * The image's layers, bottom first, as the store names them (diff ids, "sha256:…"). A driver
   * asks the store where each one is unpacked.
   */
  readonly layers: readonly string[];
}

export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
}

export interface PullProgress {
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

export interface PullOptions {
  /** For this pull only; never stored. */
  readonly credentials?: RegistryCredentials | undefined;
  readonly onProgress?: ((progress: PullProgress) => void) | undefined;
  readonly signal?: AbortSignal | undefined;
}

export type ImageStoreErrorKind =
  /** A repository, tag, digest or image id that does not exist (the message names it). */
  | "not-found"
  /** The registry refused the credentials, or wants some (the message names the registry). */
  | "authentication"
  /** The registry could not be reached or broke off (the message names it); a retry resumes. */
  | "connection"
  /** A blob or manifest whose content does not match its digest: refused, nothing kept. */
  | "digest-mismatch"
  /** A malformed reference, archive, manifest or layer (the message says what). */
  | "invalid"
  /** No manifest for the host's platform, or a media type the store cannot unpack. */
  | "unsupported"
  /**
   * The disk (or the store's size limit) is full, and what the pull had written is removed; or
   * the registry refuses more pulls for now (HTTP 429, Docker Hub's pull rate limit).
   */
  | "quota"
  /** The image is used by a sandbox that still exists. */
  | "in-use"
  /**
   * The pull took longer than the store allows one (its own deadline, whatever the client's):
   * stopped, its downloads kept for the next pull to resume.
   */
  | "timeout";

export class ImageStoreError extends Error {
  override readonly name = "ImageStoreError";
  constructor(
    readonly kind: ImageStoreErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An {@link ImageStoreError} of `kind`, caused by `cause` when there was one. */
export const imageStoreError = (kind: ImageStoreErrorKind, message: string, cause?: unknown): ImageStoreError =>
  new ImageStoreError(kind, message, cause === undefined ? undefined : { cause });

export interface ImageStore {
  /**
   * Pulls `ref` for the host's platform, or finds it already pulled (a tag is looked up again; a
   * digest is not). Concurrent pulls of one image, or of images sharing a layer, share downloads.
   */
  pull(ref: ImageReference, options?: PullOptions): Promise<ImageRecord>;
  /** Imports an OCI image layout or a `docker save` archive, as one tar stream. */
  importArchive(archive: AsyncIterable<Uint8Array>, options?: { signal?: AbortSignal }): Promise<ImageRecord>;
  list(): Promise<readonly ImageRecord[]>;
  /** By id, by manifest digest, or by a canonical reference it was pulled or imported as. */
  get(idOrRef: string): Promise<ImageRecord | undefined>;
  /** Removes the image, and every layer no other image uses. */
  delete(id: string): Promise<void>;
}
