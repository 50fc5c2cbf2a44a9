/**
 * Warm pools for images of the store: sandboxes of an image started ahead of demand, once a
 * create has named that image, so the next creates from it cost what the default image's do
 * (see warm-pool.ts). One pool per image (and user), for the most recently used images only:
 * the pool of the one used longest ago is closed when another image needs room.
 *
 * A warm sandbox stands on the store's layers as they were when it started. Should an image be
 * deleted and pulled again meanwhile, its layer dirs are new ones; such a sandbox is destroyed
 * instead of being handed out (`intact`).
 */
import type { ImageRecord } from "@sbx/server-kit";
import { WarmPool, type WarmSandbox } from "./warm-pool.js";

export interface ImageWarmPoolsOptions<S extends WarmSandbox> {
  /** Sandboxes kept started per image (0 disables). */
  readonly size: number;
  /** Images kept warm at once. */
  readonly images: number;
  /** Starts a sandbox of `image` running as `user` under the id; the pool owns it once started. */
  readonly start: (id: string, image: ImageRecord, user: string | undefined) => Promise<S>;
  /** Whether a warm sandbox may be handed out (its image's layers are still the ones it stands on). */
  readonly intact: (sandbox: S) => boolean;
}

export class ImageWarmPools<S extends WarmSandbox> {
  readonly #options: ImageWarmPoolsOptions<S>;
  /** By image id and user; the most recently used last. */
  readonly #pools = new Map<string, WarmPool<S>>();
  /** Pools being closed (evicted): close() waits for them. */
  readonly #closing = new Set<Promise<unknown>>();
  #closed = false;

  constructor(options: ImageWarmPoolsOptions<S>) {
    this.#options = options;
  }

  /**
   * A started sandbox of `image` for `user`, if one is ready (undefined the first time an image
   * is used). The caller refills the pool (`refill`) once it has what it needs.
   */
  take(image: ImageRecord, user: string | undefined): S | undefined {
    if (this.#closed || this.#options.size <= 0 || this.#options.images <= 0) return undefined;
    const key = `${image.id}\0${user ?? ""}`;
    let pool = this.#pools.get(key);
    if (pool) {
      this.#pools.delete(key); // re-inserted below: now the most recently used
    } else {
      pool = new WarmPool({ size: this.#options.size, start: (id) => this.#options.start(id, image, user) });
      this.#evictBeyond(this.#options.images - 1);
    }
    this.#pools.set(key, pool);
    let sandbox = pool.take();
    while (sandbox && !this.#options.intact(sandbox)) {
      this.#track(sandbox.destroy());
      sandbox = pool.take();
    }
    return sandbox;
  }

  /** Starts sandboxes of `image` for `user` until its pool is full (if it still has one). */
  refill(image: ImageRecord, user: string | undefined): void {
    this.#pools.get(`${image.id}\0${user ?? ""}`)?.refill();
  }

  /** Started sandboxes waiting, by image id (and user). */
  get ready(): Map<string, number> {
    return new Map([...this.#pools].map(([key, pool]) => [key.replace("\0", " as "), pool.ready]));
  }

  /** Closes the pools of `imageId` (every user's) and destroys their sandboxes. */
  async release(imageId: string): Promise<void> {
    const closing: Promise<unknown>[] = [];
    for (const [key, pool] of [...this.#pools]) {
      if (!key.startsWith(`${imageId}\0`)) continue;
      this.#pools.delete(key);
      closing.push(pool.close().then((warm) => Promise.all(warm.map((s) => s.destroy()))));
    }
    await Promise.all(closing);
  }

  /** Closes the pools of the images used longest ago until `keep` are left. */
  #evictBeyond(keep: number): void {
    while (this.#pools.size > keep) {
      const [key, pool] = this.#pools.entries().next().value as [string, WarmPool<S>];
      this.#pools.delete(key);
      this.#track(pool.close().then((warm) => Promise.all(warm.map((s) => s.destroy()))));
    }
  }

  #track(work: Promise<unknown>): void {
    const tracked = work.catch(() => {}).finally(() => this.#closing.delete(tracked));
    this.#closing.add(tracked);
  }

  /** Starts no more; hands back every started sandbox once the starts in flight have settled. */
  async close(): Promise<S[]> {
    this.#closed = true;
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    const warm = (await Promise.all(pools.map((pool) => pool.close()))).flat();
    await Promise.all([...this.#closing]);
    return warm;
  }
}
