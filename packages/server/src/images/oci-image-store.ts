/**
 * The sbx server's image store ({@link ImageStore}): images pulled from OCI registries or
 * imported from archives, their layers unpacked once into a content-addressed layer store
 * shared by every image, and their records in SQLite so they survive a restart. The store dir
 * is root-only (0700) and every file in it is owned by root or by the layer id range, never
 * by a host user.
 *
 *   <dir>/images.db         records: images, their references and digests, layer sizes
 *   <dir>/layers/sha256-<hex>  one unpacked layer (an overlay lower dir), by diff id
 *   <dir>/downloads/        partial blob downloads, kept so a retried pull resumes
 *   <dir>/tmp/              layers and imports being made (emptied at open)
 */
import { createHash } from "node:crypto";
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { formatImageReference, type ImageReference, parseImageReference } from "@sbx/proto";
import type { ImagePlatform, ImageRecord, ImageStore, PullOptions, PullProgress } from "@sbx/server-kit";
import { type Descriptor, type ResolvedImage, resolveArchiveImage } from "@sbx/server-kit/images";
import { DEFAULT_LAYER_ID_BASE, uidRangeProblems } from "../runtime/local/uid-range.js";
import { fileSource, type SpooledFile, spoolArchive } from "./archive-import.js";
import { resumableDownload } from "./blob-download.js";
import { hexOf, isDigest } from "./digest.js";
import { currentBootId, DiskSync } from "./disk-sync.js";
import { ImageDb, type StoredImage } from "./image-db.js";
import { LayerStore } from "./layer-store.js";
import { MAX_IMAGE_ID } from "./layer-unpacker.js";
import { deadlineSignal } from "./long-timer.js";
import { hostPlatform } from "./platform.js";
import { RegistryClient } from "./registry-client.js";
import { resolveFromRegistry } from "./registry-resolve.js";
import { SingleFlight } from "./single-flight.js";
import { asStoreError, ImageStoreError, storeError } from "./store-errors.js";

/**
 * The default on-disk id of an image's uid/gid 0: a block of 65,536 ids below the sandboxes'
 * (2^31 and up) that no host account or subordinate-id grant uses (checked at open). Defined
 * beside the sandboxes' ranges, which the runtime checks it against at start-up.
 */
export { DEFAULT_LAYER_ID_BASE };

const GiB = 1024 ** 3;
const DEFAULT_MAX_LAYER_BYTES = 16 * GiB;
const DEFAULT_MAX_IMAGE_BYTES = 32 * GiB;
/** Progress is reported at most once per this many bytes (and at every layer's end). */
const PROGRESS_STEP = 256 * 1024;
/** Partial downloads no pull resumed for this long are removed at open. */
const PARTIAL_MAX_AGE_MS = 24 * 60 * 60 * 1000;
const DEFAULT_PULL_TIMEOUT_MS = 60 * 60 * 1000;
const DEFAULT_DISK_SYNC_DELAY_MS = 10_000;

export interface OciImageStoreOptions {
  /** The store's directory (made if missing; root-only). */
  readonly dir: string;
  /** On-disk uid/gid of an image's id 0 (image id N is stored as base + N). */
  readonly layerIdBase?: number | undefined;
  /** Registries ("host:port") spoken to over plain HTTP although not on loopback. */
  readonly insecureRegistries?: readonly string[] | undefined;
  /** The most uncompressed bytes one layer may have (default 16 GiB): a decompression bomb stops there. */
  readonly maxLayerBytes?: number | undefined;
  /**
   * The most uncompressed bytes one image's layers may have together (default 32 GiB); an
   * archive being imported may unpack to no more than this either.
   */
  readonly maxImageBytes?: number | undefined;
  /**
   * The most bytes the store's layers may take together (what `usage().layerBytes` counts),
   * layers being unpacked included: a pull or import that would take the store past it fails
   * with "quota" and what it had written is removed. Default: no limit but the disk's.
   */
  readonly maxStoreBytes?: number | undefined;
  /**
   * How long one pull may take, manifest to last layer (default 1 hour): past it the pull
   * stops with "timeout", keeping its partial downloads for the next pull to resume.
   */
  readonly pullTimeoutMs?: number | undefined;
  /**
   * How soon after layers were added the store syncs its file system, then counts them as on
   * the disk (default 10 s): a layer a power cut caught before that is removed at the next open.
   */
  readonly diskSyncDelayMs?: number | undefined;
  /** Whether a sandbox still uses the image: such an image is not deleted ("in-use"). */
  readonly inUse?: ((imageId: string) => boolean) | undefined;
  /** The platform images are pulled for (default: this host's). */
  readonly platform?: ImagePlatform | undefined;
  /** Layers one pull downloads at once (default 3). */
  readonly concurrentDownloads?: number | undefined;
  /**
   * Worker threads that check and unpack layers, for all pulls and imports (default: one per
   * CPU but one, the main thread's, at least one and at most `concurrentDownloads`).
   */
  readonly layerWorkers?: number | undefined;
  /** Sent to registries as the User-Agent. */
  readonly userAgent?: string | undefined;
}

export interface ImageStoreUsage {
  readonly images: number;
  readonly layers: number;
  /** Bytes the unpacked layers take (file content and symlink targets). */
  readonly layerBytes: number;
  /** Bytes of partial downloads kept for resuming. */
  readonly partialDownloadBytes: number;
}

/** Where a layer's blob comes from, for one pull or import (`signal`: the download's own). */
type LayerSource = (
  index: number,
  signal: AbortSignal,
) => { readonly source: AsyncIterable<Uint8Array>; readonly partialPath?: string };

interface LayerEvent {
  readonly downloaded: number;
  readonly unpacked: number;
}

export class OciImageStore implements ImageStore {
  readonly #options: OciImageStoreOptions;
  readonly #dir: string;
  readonly #db: ImageDb;
  readonly #layers: LayerStore;
  readonly #platform: ImagePlatform;
  readonly #flights = new SingleFlight<void, LayerEvent>();
  /** Layers that pulls and imports under way will use: garbage collection leaves them. */
  readonly #pinned = new Map<string, number>();
  /** Uncompressed bytes of the layers being unpacked, by their job (they count against `maxStoreBytes`). */
  readonly #unpacking = new Map<object, number>();
  readonly #bootId = currentBootId();
  readonly #diskSync: DiskSync;

  /** Opens (or makes) the store in `options.dir`; throws when it cannot be used here. */
  static async open(options: OciImageStoreOptions): Promise<OciImageStore> {
    checkOptions(options);
    if (process.getuid?.() !== 0) {
      throw new Error("the image store runs as root: it keeps the owners of image files (shifted into its id range)");
    }
    const base = options.layerIdBase ?? DEFAULT_LAYER_ID_BASE;
    const problems = await uidRangeProblems({ start: base, count: MAX_IMAGE_ID + 1 }, undefined, "the layer id range");
    if (problems.length > 0) throw new Error(`the image store cannot use its layer ids: ${problems.join("; ")}`);
    return new OciImageStore(options, base);
  }

  private constructor(
    options: OciImageStoreOptions,
    /** On-disk uid/gid of an image's id 0 (a runtime driver idmaps layers from it). */
    readonly layerIdBase: number,
  ) {
    this.#options = options;
    this.#dir = options.dir;
    this.#platform = options.platform ?? hostPlatform();
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(this.#dir);
    if (!st.isDirectory() || st.uid !== 0) {
      throw new Error(`the image store's dir ${this.#dir} must be a directory owned by root (not a symlink)`);
    }
    // Root-only: layers hold setuid files and files of image users that no host user may reach.
    if ((st.mode & 0o7777) !== 0o700) chmodSync(this.#dir, 0o700);
    rmSync(this.#tmp, { recursive: true, force: true });
    mkdirSync(this.#tmp, { mode: 0o700 });
    mkdirSync(this.#downloads, { recursive: true, mode: 0o700 });
    const workers =
      options.layerWorkers ?? Math.max(1, Math.min(options.concurrentDownloads ?? 3, availableParallelism() - 1));
    this.#layers = new LayerStore(join(this.#dir, "layers"), this.#tmp, layerIdBase, workers);
    this.#db = new ImageDb(join(this.#dir, "images.db"));
    const db = this.#db;
    this.#diskSync = new DiskSync({
      dir: this.#dir,
      delayMs: options.diskSyncDelayMs ?? DEFAULT_DISK_SYNC_DELAY_MS,
      mark: () => db.layerSeq(),
      synced: (mark) => db.markSynced(mark),
    });
    this.#reconcile();
    // Layers of this boot an earlier run of the store left unsynced (it stopped before its sync).
    if (db.hasUnsynced()) this.#diskSync.request();
  }

  get #tmp(): string {
    return join(this.#dir, "tmp");
  }

  get #downloads(): string {
    return join(this.#dir, "downloads");
  }

  /** Where layer `diffId` is unpacked (for a runtime driver: an overlay lower dir). */
  layerDir(diffId: string): string {
    return this.#layers.dir(diffId);
  }

  /**
   * A token naming layer `diffId`'s dir as it is now, never the same for a dir removed and
   * unpacked again (undefined when it is not in the store): what a runtime driver checks
   * before it hands out a sandbox started earlier on the layer.
   */
  layerToken(diffId: string): string | undefined {
    return this.#layers.token(diffId);
  }

  /**
   * Makes the records and the disk agree after a crash: layers made before a reboot and never
   * synced (disk-sync.ts), layers on disk without a record (or the other way round) go, with
   * any image that lacks a layer; then unused layers and stale partial downloads.
   */
  #reconcile(): void {
    // A power cut (a reboot since) may have caught these before their files reached the disk.
    for (const diffId of this.#db.unsyncedFromOtherBoots(this.#bootId)) {
      this.#layers.remove(diffId);
      this.#db.deleteLayer(diffId);
    }
    const recorded = new Set(this.#db.layers().map((l) => l.diffId));
    const onDisk = new Set(this.#layers.onDisk());
    for (const diffId of onDisk) if (!recorded.has(diffId)) this.#layers.remove(diffId);
    for (const diffId of recorded) if (!onDisk.has(diffId)) this.#db.deleteLayer(diffId);
    for (const image of this.#db.images()) {
      if (image.layers.some((l) => !onDisk.has(l) || !recorded.has(l))) this.#db.deleteImage(image.id);
    }
    this.#collectGarbage();
    const now = Date.now();
    for (const name of readdirSync(this.#downloads)) {
      const path = join(this.#downloads, name);
      if (now - statSync(path).mtimeMs > PARTIAL_MAX_AGE_MS) rmSync(path, { force: true });
    }
  }

  async pull(ref: ImageReference, options: PullOptions = {}): Promise<ImageRecord> {
    const canonical = formatImageReference(ref);
    if (ref.digest !== undefined) {
      const known = this.#db.byDigest(ref.digest);
      if (known !== undefined) return this.#alias(known.id, [], canonical);
    }
    const timeoutMs = this.#options.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
    const deadline = deadlineSignal(timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline.signal]) : deadline.signal;
    try {
      return await this.#pull(ref, canonical, { ...options, signal });
    } catch (error) {
      if (deadline.signal.aborted && !options.signal?.aborted) {
        throw storeError(
          "timeout",
          `pulling ${canonical} took longer than the ${timeoutMs} ms the image store allows one pull: stopped (pulling again resumes its downloads)`,
          error,
        );
      }
      throw error;
    } finally {
      deadline.clear();
    }
  }

  async #pull(ref: ImageReference, canonical: string, options: PullOptions): Promise<ImageRecord> {
    this.#layers.warm(); // while the registry is asked for the manifest and config
    const client = new RegistryClient(ref.registry, ref.repository, {
      credentials: options.credentials,
      insecureRegistries: this.#options.insecureRegistries,
      signal: options.signal,
      userAgent: this.#options.userAgent,
    });
    // A manifest the store already has an image of needs no config nor layers: a re-pulled tag.
    const resolved = await resolveFromRegistry(client, ref, this.#platform, (digest) => this.#db.byDigest(digest)?.id);
    if (resolved.kind === "known") return this.#alias(resolved.imageId, resolved.digests, canonical);
    const image = resolved.image;
    const source: LayerSource = (i, signal) => {
      const blob = image.layers[i] as Descriptor;
      const partialPath = this.#partialPath(blob.digest, client.apiBase);
      return {
        partialPath,
        source: resumableDownload({
          partialPath,
          size: blob.size,
          fetchFrom: (offset) => client.getBlob(blob.digest, offset, signal),
          signal,
        }),
      };
    };
    return this.#materialize(image, source, { ...options, what: client.name, from: client.apiBase, ref: [canonical] });
  }

  async importArchive(
    archive: AsyncIterable<Uint8Array>,
    options: { signal?: AbortSignal } = {},
  ): Promise<ImageRecord> {
    const work = mkdtempSync(join(this.#tmp, "import-"));
    try {
      options.signal?.throwIfAborted();
      const spooled = await spoolArchive(options.signal ? abortable(archive, options.signal) : archive, work, {
        maxBytes: this.#options.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES,
      });
      options.signal?.throwIfAborted();
      const { resolved, refs, layers } = await resolveArchiveImage(spooled, this.#platform);
      const known = this.#db.byDigest(resolved.manifestDigest);
      if (known !== undefined) {
        return this.#alias(known.id, resolved.digests, ...refs);
      }
      const source: LayerSource = (i) => ({ source: fileSource((layers[i] as SpooledFile).path) });
      return await this.#materialize(resolved, source, {
        what: "the archive",
        from: `archive ${work}`,
        ref: refs,
        signal: options.signal,
      });
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  /** Records more digests and references for an image the store has; returns it. */
  #alias(id: string, digests: readonly string[], ...refs: readonly string[]): ImageRecord {
    this.#db.addAliases(id, digests, refs, Date.now());
    return this.#db.image(id) as ImageRecord;
  }

  /**
   * Gets every layer of `image` into the layer store (each one downloaded and unpacked once,
   * shared with the other pulls under way from the same registry), then records the image.
   */
  async #materialize(
    image: ResolvedImage,
    layerSource: LayerSource,
    job: {
      readonly what: string;
      /**
       * Where the layers come from (a registry's API base; an import's own): pulls share a
       * layer's download only with pulls from the same place, so that a registry that serves a
       * layer wrong, or slowly, fails or stalls no pull but its own.
       */
      readonly from: string;
      readonly ref: readonly string[];
      readonly signal?: AbortSignal | undefined;
      readonly onProgress?: ((progress: PullProgress) => void) | undefined;
    },
  ): Promise<ImageRecord> {
    const diffIds = image.config.diffIds;
    const maxLayer = this.#options.maxLayerBytes ?? DEFAULT_MAX_LAYER_BYTES;
    const maxImage = this.#options.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES;
    const have = (diffId: string) => this.#db.layerSize(diffId) !== undefined;
    checkBlobSizes(image, job.what, maxLayer, maxImage, have);
    const maxStore = this.#options.maxStoreBytes;
    const storeFull = () =>
      storeError(
        "quota",
        `${job.what} does not fit in the image store, which may hold ${maxStore} bytes of layers: delete images to make room`,
      );
    if (maxStore !== undefined && diffIds.some((d) => !have(d)) && this.#storeBytes() >= maxStore) throw storeFull();
    const controller = new AbortController();
    const onAbort = () => controller.abort(job.signal?.reason);
    if (job.signal?.aborted) onAbort();
    job.signal?.addEventListener("abort", onAbort, { once: true });
    const progress = new ProgressTracker(
      image.layers.map((l) => l.size),
      job.onProgress,
    );
    const unpacked = diffIds.map(() => 0);
    this.#pin(diffIds);
    let pinned = true;
    try {
      await inParallel(diffIds.length, this.#options.concurrentDownloads ?? 3, controller, async (i) => {
        const diffId = diffIds[i] as string;
        const known = this.#db.layerSize(diffId);
        if (known !== undefined) {
          unpacked[i] = known;
          progress.layerDone(i);
          return;
        }
        const blob = image.layers[i] as Descriptor;
        const what = `layer ${i + 1} of ${job.what}`;
        await this.#flights.run(
          `${diffId} ${blob.digest} ${job.from}`,
          (signal, emit) => this.#addLayer(diffId, blob, what, maxLayer, (s) => layerSource(i, s), signal, emit),
          {
            signal: controller.signal,
            onEvent: (event) => {
              progress.set(i, event.downloaded);
              unpacked[i] = event.unpacked;
              const total = unpacked.reduce((a, b) => a + b, 0);
              if (total > maxImage && !controller.signal.aborted) {
                controller.abort(
                  storeError(
                    "quota",
                    `${job.what} unpacks to more than ${maxImage} bytes, the store's limit for one image`,
                  ),
                );
              }
              if (maxStore !== undefined && !controller.signal.aborted && this.#storeBytes() > maxStore) {
                controller.abort(storeFull());
              }
            },
          },
        );
        progress.layerDone(i);
      });
      const now = Date.now();
      const stored: StoredImage = {
        id: imageIdOf(image.configDigest),
        digest: image.manifestDigest,
        sizeBytes: [...new Set(diffIds)].reduce((sum, d) => sum + (this.#db.layerSize(d) ?? 0), 0),
        createdAtMs: now,
        platform: image.config.platform,
        config: image.config.config,
        layers: diffIds,
      };
      this.#db.saveImage(stored, image.digests, job.ref, now);
      return this.#db.image(stored.id) as ImageRecord;
    } catch (error) {
      if (error instanceof ImageStoreError && error.kind === "quota") {
        this.#unpin(diffIds);
        pinned = false;
        this.#freeAfterQuota(image, job.from);
      }
      throw error;
    } finally {
      job.signal?.removeEventListener("abort", onAbort);
      if (pinned) this.#unpin(diffIds);
    }
  }

  /**
   * After a full disk (or a size limit): what this pull alone had written goes, its partial
   * downloads and the layers no image uses, so the disk is as it was before it.
   */
  #freeAfterQuota(image: ResolvedImage, from: string): void {
    image.config.diffIds.forEach((diffId, i) => {
      if (this.#pinned.has(diffId)) return; // another pull or import needs it
      rmSync(this.#partialPath((image.layers[i] as Descriptor).digest, from), { force: true });
    });
    this.#collectGarbage();
  }

  /** Where a blob's download from the registry at `from` is kept (one per registry: never mixed). */
  #partialPath(digest: string, from: string): string {
    const registry = createHash("sha256").update(from).digest("hex").slice(0, 16);
    return join(this.#downloads, `${digest.replace(":", "-")}.${registry}.partial`);
  }

  /** One layer: its blob (downloaded, resumed, or read from an archive) checked and unpacked. */
  async #addLayer(
    diffId: string,
    blob: Descriptor,
    what: string,
    maxBytes: number,
    open: (signal: AbortSignal) => ReturnType<LayerSource>,
    signal: AbortSignal,
    emit: (event: LayerEvent) => void,
  ): Promise<void> {
    let downloaded = 0;
    let unpacked = 0;
    const job = {};
    this.#unpacking.set(job, 0);
    let partialPath: string | undefined;
    try {
      const { sizeBytes } = await this.#layers.add({
        diffId,
        // Opened again if the layer's job is run again (a download replays what it kept).
        open: () => {
          // Its own signal too: a layer that failed to unpack ends the read under way at once.
          const reading = new AbortController();
          const opened = open(AbortSignal.any([signal, reading.signal]));
          partialPath = opened.partialPath;
          const counted = countBytes(opened.source, (n) => {
            downloaded = n;
            emit({ downloaded, unpacked });
          });
          return { source: abortable(counted, signal), stop: () => reading.abort() };
        },
        blob,
        maxBytes,
        what,
        onUnpackedBytes: (n) => {
          unpacked = n;
          this.#unpacking.set(job, n);
          emit({ downloaded, unpacked });
        },
      });
      this.#db.saveLayer(diffId, sizeBytes, this.#bootId);
      this.#diskSync.request();
      this.#unpacking.delete(job);
      if (partialPath !== undefined) rmSync(partialPath, { force: true });
    } catch (error) {
      const failure = asStoreError(error, `pulling ${what}`);
      // A broken connection or an abort keeps the partial download for a retry to resume;
      // bytes that are wrong, or a full disk, do not.
      const resumable =
        signal.aborted ||
        (failure instanceof ImageStoreError && ["connection", "authentication", "not-found"].includes(failure.kind));
      if (!resumable && partialPath !== undefined) rmSync(partialPath, { force: true });
      throw failure;
    } finally {
      this.#unpacking.delete(job);
    }
  }

  /** Bytes the store's layers take, those being unpacked included (what `maxStoreBytes` bounds). */
  #storeBytes(): number {
    let total = this.#db.layerBytes();
    for (const bytes of this.#unpacking.values()) total += bytes;
    return total;
  }

  #pin(diffIds: readonly string[]): void {
    for (const d of diffIds) this.#pinned.set(d, (this.#pinned.get(d) ?? 0) + 1);
  }

  #unpin(diffIds: readonly string[]): void {
    for (const d of diffIds) {
      const n = (this.#pinned.get(d) ?? 1) - 1;
      if (n === 0) this.#pinned.delete(d);
      else this.#pinned.set(d, n);
    }
  }

  async list(): Promise<readonly ImageRecord[]> {
    return this.#db.images();
  }

  async get(idOrRef: string): Promise<ImageRecord | undefined> {
    const byId = this.#db.image(idOrRef);
    if (byId !== undefined) return byId;
    if (isDigest(idOrRef)) return this.#db.byDigest(idOrRef);
    const byRef = this.#db.byRef(idOrRef);
    if (byRef !== undefined) return byRef;
    let ref: ImageReference;
    try {
      ref = parseImageReference(idOrRef);
    } catch {
      return undefined;
    }
    return (
      this.#db.byRef(formatImageReference(ref)) ??
      (ref.digest !== undefined ? this.#db.byDigest(ref.digest) : undefined)
    );
  }

  async delete(id: string): Promise<void> {
    const image = this.#db.image(id);
    if (image === undefined) throw storeError("not-found", `image ${id} not found`);
    if (this.#options.inUse?.(id)) throw storeError("in-use", `image ${id} is used by a sandbox`);
    this.#db.deleteImage(id);
    this.#collectGarbage();
  }

  /** Removes the layers no image uses (and no pull or import under way will). */
  #collectGarbage(): void {
    const used = new Set(this.#db.images().flatMap((i) => i.layers));
    for (const { diffId } of this.#db.layers()) {
      if (used.has(diffId) || this.#pinned.has(diffId)) continue;
      this.#layers.remove(diffId);
      this.#db.deleteLayer(diffId);
    }
  }

  /** Disk usage of the whole store. */
  async usage(): Promise<ImageStoreUsage> {
    const layers = this.#db.layers();
    let partialDownloadBytes = 0;
    for (const name of readdirSync(this.#downloads)) {
      partialDownloadBytes += statSync(join(this.#downloads, name)).size;
    }
    return {
      images: this.#db.images().length,
      layers: layers.length,
      layerBytes: layers.reduce((sum, l) => sum + l.sizeBytes, 0),
      partialDownloadBytes,
    };
  }

  close(): void {
    this.#diskSync.close();
    this.#layers.close();
    this.#db.close();
  }
}

/** Refuses options that are not whole numbers in range, each named, before anything is made. */
function checkOptions(options: OciImageStoreOptions): void {
  const whole = (name: keyof OciImageStoreOptions, min: number, unit: string) => {
    const value = options[name];
    if (value === undefined) return;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
      throw new RangeError(
        `the image store's ${name} must be a whole number of ${unit} (at least ${min}), got ${String(value)}`,
      );
    }
  };
  whole("pullTimeoutMs", 1, "ms");
  whole("diskSyncDelayMs", 0, "ms");
  whole("maxLayerBytes", 1, "bytes");
  whole("maxImageBytes", 1, "bytes");
  whole("maxStoreBytes", 0, "bytes");
  whole("concurrentDownloads", 1, "downloads");
  whole("layerWorkers", 1, "workers");
  whole("layerIdBase", 0, "ids");
}

/**
 * The layer blobs the store lacks must fit the limits as they are stored, too: compressed
 * bytes are bounded only by a blob's size in its manifest, and trailing zeros, empty gzip
 * members or zstd skippable frames unpack to nothing, so the unpacked-bytes limits would never
 * stop a registry that sent them for ever. (A compressed layer is smaller than its tar, but for
 * a few bytes of framing.)
 */
function checkBlobSizes(
  image: ResolvedImage,
  what: string,
  maxLayer: number,
  maxImage: number,
  have: (diffId: string) => boolean,
): void {
  const needed = new Map<string, { blob: Descriptor; i: number }>();
  image.config.diffIds.forEach((diffId, i) => {
    if (!have(diffId) && !needed.has(diffId)) needed.set(diffId, { blob: image.layers[i] as Descriptor, i });
  });
  let total = 0;
  for (const { blob, i } of needed.values()) {
    if (blob.size > maxLayer) {
      throw storeError(
        "quota",
        `layer ${i + 1} of ${what} is a blob of ${blob.size} bytes, over the ${maxLayer} bytes the store allows one layer`,
      );
    }
    total += blob.size;
  }
  if (total > maxImage) {
    throw storeError(
      "quota",
      `${what} has layer blobs of ${total} bytes in all, over the ${maxImage} bytes the store allows one image`,
    );
  }
}

/** "im-" and the first 20 hex digits of the config digest. */
export const imageIdOf = (configDigest: string): string => `im-${hexOf(configDigest).slice(0, 20)}`;

/** Runs `task(0..count-1)`, `limit` at a time; the first failure aborts `controller` and is thrown. */
async function inParallel(
  count: number,
  limit: number,
  controller: AbortController,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < count && failure === undefined) {
      const i = next++;
      try {
        controller.signal.throwIfAborted();
        await task(i);
      } catch (error) {
        failure ??= {
          error: controller.signal.aborted && controller.signal.reason !== undefined ? controller.signal.reason : error,
        };
        if (!controller.signal.aborted) controller.abort(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  if (failure !== undefined) throw failure.error;
}

/** Per-layer compressed bytes done, reported as one total (at most every PROGRESS_STEP bytes). */
class ProgressTracker {
  readonly #sizes: readonly number[];
  readonly #done: number[];
  readonly #total: number;
  readonly #onProgress: ((progress: PullProgress) => void) | undefined;
  #reported = -1;

  constructor(sizes: readonly number[], onProgress: ((progress: PullProgress) => void) | undefined) {
    this.#sizes = sizes;
    this.#done = sizes.map(() => 0);
    this.#total = sizes.reduce((a, b) => a + b, 0);
    this.#onProgress = onProgress;
    this.#report(true);
  }

  /** Never less than before: a layer run again reads its blob from the start. */
  set(index: number, done: number): void {
    this.#done[index] = Math.max(this.#done[index] ?? 0, Math.min(done, this.#sizes[index] ?? 0));
    this.#report(false);
  }

  layerDone(index: number): void {
    this.#done[index] = this.#sizes[index] ?? 0;
    this.#report(true);
  }

  #report(always: boolean): void {
    if (this.#onProgress === undefined) return;
    const bytesDone = this.#done.reduce((a, b) => a + b, 0);
    if (bytesDone === this.#reported) return;
    if (!always && bytesDone - this.#reported < PROGRESS_STEP && bytesDone !== this.#total) return;
    this.#reported = bytesDone;
    this.#onProgress({ bytesDone, bytesTotal: this.#total });
  }
}

async function* countBytes(
  source: AsyncIterable<Uint8Array>,
  onBytes: (total: number) => void,
): AsyncGenerator<Uint8Array, void, undefined> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.byteLength;
    onBytes(total);
    yield chunk;
  }
}

/** Stops `source` with the signal's reason when it aborts (a file read has no signal of its own). */
async function* abortable(
  source: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const chunk of source) {
    signal.throwIfAborted();
    yield chunk;
  }
}
