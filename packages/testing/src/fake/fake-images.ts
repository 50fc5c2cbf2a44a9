/**
 * The fake's images: a registry a test fills (`fake.images.add(reference, …)`, with private
 * repositories behind credentials) and an image store over it, in memory, plugged into the
 * engine's image-store seam as the sbx server plugs in its own. Pulls and imports fail the way
 * the server's store does (ImageStoreError kinds, which the engine turns into the client's
 * typed errors), and failures can be injected with `fake.failNext("pullImage", { imageError })`.
 */
import { concat } from "@sbx/core/adapter";
import { formatImageReference, type ImageReference, parseImageReference } from "@sbx/proto";
import {
  DEFAULT_IMAGE,
  type ImageConfig,
  type ImagePlatform,
  type ImageRecord,
  type ImageStore,
  ImageStoreError,
  type ImageStoreErrorKind,
  type PullOptions,
} from "@sbx/server-kit";
import { digestOfBytes } from "@sbx/server-kit/images";
import { confinedPath, type FakeImageFile, type FakeImageFiles, readImageArchive } from "./fake-archive.js";
import type { Faults } from "./faults.js";

export type { FakeImageFile, FakeImageFiles } from "./fake-archive.js";

/** An image as a test describes it to the fake's registry. */
export interface FakeImageOptions {
  /** The image's `Env`: a record, or "KEY=value" entries. Processes get it under the sandbox's env. */
  readonly env?: Readonly<Record<string, string>> | readonly string[];
  /** The image's `WorkingDir` (absolute): processes start there unless told otherwise. */
  readonly workingDir?: string;
  /** The image's `User` ("name", "uid", "name:group", "uid:gid"): processes run as it. */
  readonly user?: string;
  /** The image's `Entrypoint`, reported in `image.config` (a sandbox runs its own command). */
  readonly entrypoint?: readonly string[];
  /** The image's `Cmd`, reported in `image.config` (a sandbox runs its own command). */
  readonly cmd?: readonly string[];
  /**
   * Files the image holds, by absolute path (parent directories are made): text, bytes, or
   * `{ data, mode }`. A sandbox started from the image finds them; its whole root is writable.
   */
  readonly files?: Readonly<
    Record<string, string | Uint8Array | { readonly data: string | Uint8Array; readonly mode: number }>
  >;
  /** Credentials the registry wants for this repository: pulls without them are refused. */
  readonly credentials?: { readonly username: string; readonly password: string };
  /** Default: linux and the host's architecture. */
  readonly platform?: ImagePlatform;
  /** What its layers weigh, as pull progress and `sizeBytes` report it. Default: its files' bytes. */
  readonly sizeBytes?: number;
}

/** What `fake.images.add` registered. */
export interface FakeRegisteredImage {
  /** The canonical reference ("docker.io/library/python:3.12-slim"). */
  readonly reference: string;
  /** Manifest digest: pulling `repository@digest` finds it too. */
  readonly digest: string;
  /** The id the image gets once pulled. */
  readonly id: string;
}

/** `fake.images`: the registry a test fills, and what the fake's store holds. */
export interface FakeImages {
  /** Puts an image into the fake registry under `reference` (replacing what that tag named). */
  add(reference: string, options?: FakeImageOptions): Promise<FakeRegisteredImage>;
  /** Images pulled or imported so far (not the default image). */
  readonly stored: readonly ImageRecord[];
}

interface RegistryEntry {
  readonly reference: ImageReference;
  readonly digest: string;
  readonly configDigest: string;
  readonly config: ImageConfig;
  readonly platform: ImagePlatform;
  readonly files: FakeImageFiles;
  readonly sizeBytes: number;
  readonly credentials: { readonly username: string; readonly password: string } | undefined;
}

const encoder = new TextEncoder();
const idOf = (configDigest: string) => `im-${configDigest.slice("sha256:".length, "sha256:".length + 20)}`;
const repositoryKey = (ref: ImageReference) => `${ref.registry}/${ref.repository}`;

function envEntries(env: FakeImageOptions["env"]): string[] {
  if (env === undefined) return [];
  if (Array.isArray(env)) return [...(env as readonly string[])];
  return Object.entries(env as Record<string, string>).map(([key, value]) => `${key}=${value}`);
}

function filesOf(files: FakeImageOptions["files"]): Map<string, FakeImageFile> {
  const root = new Map<string, FakeImageFile>();
  for (const [name, value] of Object.entries(files ?? {})) {
    const path = confinedPath(name);
    if (!name.startsWith("/") || path === undefined || path === "/") {
      throw new TypeError(`image file paths must be absolute paths of files, got ${JSON.stringify(name)}`);
    }
    const { data, mode } =
      typeof value === "object" && !(value instanceof Uint8Array) ? value : { data: value, mode: 0o644 };
    for (let dir = path.slice(0, path.lastIndexOf("/")); dir !== ""; dir = dir.slice(0, dir.lastIndexOf("/"))) {
      if (!root.has(dir)) root.set(dir, { type: "directory", mode: 0o755 });
    }
    root.set(path, { type: "file", data: typeof data === "string" ? encoder.encode(data) : data, mode });
  }
  return root;
}

const sizeOfFiles = (files: FakeImageFiles) =>
  [...files.values()].reduce((n, f) => n + (f.type === "file" ? f.data.byteLength : 0), 0);

export class FakeImageStore implements ImageStore, FakeImages {
  /** The registry, by canonical reference with its tag. */
  readonly #registry = new Map<string, RegistryEntry>();
  /** Pulled and imported images, by id. */
  readonly #images = new Map<string, ImageRecord>();
  readonly #files = new Map<string, FakeImageFiles>();

  constructor(readonly faults: Faults) {}

  get stored(): readonly ImageRecord[] {
    return [...this.#images.values()];
  }

  /** The files of a stored image, for the fake runtime to start a sandbox from. */
  filesOf(imageId: string): FakeImageFiles {
    return this.#files.get(imageId) ?? new Map();
  }

  async add(reference: string, options: FakeImageOptions = {}): Promise<FakeRegisteredImage> {
    const ref = parseImageReference(reference);
    if (ref.tag === undefined) throw new TypeError("register an image under a tag (a digest is given to it)");
    if (options.workingDir !== undefined && !options.workingDir.startsWith("/")) {
      throw new TypeError(`workingDir must be absolute, got ${JSON.stringify(options.workingDir)}`);
    }
    const files = filesOf(options.files);
    const config: ImageConfig = {
      env: envEntries(options.env),
      workingDir: options.workingDir,
      user: options.user,
      entrypoint: options.entrypoint ? [...options.entrypoint] : undefined,
      cmd: options.cmd ? [...options.cmd] : undefined,
    };
    const platform = options.platform ?? DEFAULT_IMAGE.platform;
    const contents = [...files].map(([path, f]) => [
      path,
      f.type,
      f.type === "file" ? [...f.data] : f.type === "symlink" ? f.target : "",
    ]);
    const configDigest = await digestOfBytes(JSON.stringify({ config, platform, contents }));
    const canonical = formatImageReference({ ...ref, digest: undefined });
    const entry: RegistryEntry = {
      reference: { ...ref, digest: undefined },
      digest: await digestOfBytes(`manifest of ${configDigest}`),
      configDigest,
      config,
      platform,
      files,
      sizeBytes: options.sizeBytes ?? Math.max(1, sizeOfFiles(files)),
      credentials: options.credentials ? { ...options.credentials } : undefined,
    };
    this.#registry.set(canonical, entry);
    return { reference: canonical, digest: entry.digest, id: idOf(configDigest) };
  }

  #fault(method: "PullImage" | "ImportImage", about: string): void {
    const fault = this.faults.takeImageFailure(method);
    if (!fault) return;
    throw new ImageStoreError(fault.imageError, fault.message ?? injectedMessage(fault.imageError, about));
  }

  #find(ref: ImageReference): RegistryEntry | undefined {
    if (ref.digest !== undefined) {
      for (const entry of this.#registry.values()) {
        if (repositoryKey(entry.reference) === repositoryKey(ref) && entry.digest === ref.digest) return entry;
      }
      return undefined;
    }
    return this.#registry.get(formatImageReference(ref));
  }

  async pull(ref: ImageReference, options: PullOptions = {}): Promise<ImageRecord> {
    const canonical = formatImageReference(ref);
    this.#fault("PullImage", `${canonical} from ${ref.registry}`);
    const entry = this.#find(ref);
    // A private repository answers as registries do: who may not see it learns nothing of its tags.
    const gated = [...this.#registry.values()].find(
      (e) => repositoryKey(e.reference) === repositoryKey(ref) && e.credentials !== undefined,
    );
    if (gated?.credentials) {
      const given = options.credentials;
      if (!given) {
        throw new ImageStoreError("authentication", `registry ${ref.registry} wants credentials for ${ref.repository}`);
      }
      if (given.username !== gated.credentials.username || given.password !== gated.credentials.password) {
        throw new ImageStoreError(
          "authentication",
          `registry ${ref.registry} refused the credentials for ${ref.repository}`,
        );
      }
    }
    if (!entry) {
      const known = [...this.#registry.values()].some((e) => repositoryKey(e.reference) === repositoryKey(ref));
      const what = ref.digest ?? `tag ${JSON.stringify(ref.tag)}`;
      throw new ImageStoreError(
        "not-found",
        known
          ? `${canonical} not found: repository ${ref.repository} on ${ref.registry} has no ${what}`
          : `${canonical} not found: registry ${ref.registry} has no repository ${ref.repository}`,
      );
    }
    // Progress as the layers arrive: nothing, then all of it.
    options.onProgress?.({ bytesDone: 0, bytesTotal: entry.sizeBytes });
    await new Promise((resolve) => setTimeout(resolve, 0));
    if (options.signal?.aborted) throw options.signal.reason;
    options.onProgress?.({ bytesDone: entry.sizeBytes, bytesTotal: entry.sizeBytes });
    return this.#keep({
      id: idOf(entry.configDigest),
      ref: canonical,
      digest: entry.digest,
      sizeBytes: entry.sizeBytes,
      platform: entry.platform,
      config: entry.config,
      layers: entry.files.size > 0 ? [entry.configDigest] : [],
      files: entry.files,
    });
  }

  async importArchive(
    archive: AsyncIterable<Uint8Array>,
    options: { signal?: AbortSignal } = {},
  ): Promise<ImageRecord> {
    this.#fault("ImportImage", "the archive");
    const pieces: Uint8Array[] = [];
    let size = 0;
    for await (const piece of archive) {
      size += piece.byteLength;
      if (size > MAX_ARCHIVE_BYTES) {
        throw new ImageStoreError("quota", `the archive is larger than the fake's limit of ${MAX_ARCHIVE_BYTES} bytes`);
      }
      pieces.push(piece.slice()); // a piece may be reused once the next is asked for
    }
    if (options.signal?.aborted) throw options.signal.reason;
    const image = await readImageArchive(concat(pieces), DEFAULT_IMAGE.platform, { maxBytes: MAX_ARCHIVE_BYTES });
    let record: ImageRecord | undefined;
    for (const ref of image.refs.length > 0 ? image.refs : [undefined]) {
      record = this.#keep({
        id: idOf(image.configDigest),
        ref,
        digest: image.digest,
        sizeBytes: Math.max(1, sizeOfFiles(image.files)),
        platform: image.platform,
        config: image.config,
        layers: image.layers,
        files: image.files,
      });
    }
    return record as ImageRecord;
  }

  /** Keeps an image (one id per config, as the server's store does), `ref` added to its refs. */
  #keep(
    image: Omit<ImageRecord, "refs" | "createdAtMs"> & { ref: string | undefined; files: FakeImageFiles },
  ): ImageRecord {
    const { ref, files, ...rest } = image;
    // A tag now naming this image names no other.
    if (ref !== undefined) {
      for (const [id, other] of this.#images) {
        if (id !== image.id && other.refs.includes(ref)) {
          this.#images.set(id, { ...other, refs: other.refs.filter((r) => r !== ref) });
        }
      }
    }
    const known = this.#images.get(image.id);
    const refs = [...(ref === undefined ? [] : [ref]), ...(known?.refs ?? []).filter((r) => r !== ref)];
    const record: ImageRecord = { ...rest, refs, createdAtMs: known?.createdAtMs ?? Date.now() };
    this.#images.set(image.id, record);
    this.#files.set(image.id, files);
    return record;
  }

  async list(): Promise<readonly ImageRecord[]> {
    return [...this.#images.values()];
  }

  async get(idOrRef: string): Promise<ImageRecord | undefined> {
    for (const image of this.#images.values()) {
      if (image.id === idOrRef || image.digest === idOrRef || image.refs.includes(idOrRef)) return image;
    }
    return undefined;
  }

  async delete(id: string): Promise<void> {
    if (!this.#images.delete(id)) throw new ImageStoreError("not-found", `image ${id} not found`);
    this.#files.delete(id);
  }
}

/** The fake keeps archives in memory: it takes ones up to this size, unpacking to no more. */
export const MAX_ARCHIVE_BYTES = 512 * 1024 * 1024;

/** What an injected image failure says when the test gave no message, as the server's store would. */
function injectedMessage(kind: ImageStoreErrorKind, about: string): string {
  switch (kind) {
    case "not-found":
      return `${about}: not found (injected)`;
    case "authentication":
      return `${about}: the registry refused the credentials (injected)`;
    case "connection":
      return `${about}: the registry could not be reached (injected)`;
    case "digest-mismatch":
      return `${about}: a blob does not match its digest: refused, nothing kept (injected)`;
    case "invalid":
      return `${about}: malformed (injected)`;
    case "unsupported":
      return `${about}: not supported (injected)`;
    case "quota":
      return `${about}: no space left for the image (injected)`;
    case "in-use":
      return `${about}: in use (injected)`;
    case "timeout":
      return `${about}: took longer than the store allows one pull (injected)`;
  }
}
