/**
 * The engine's images: the driver's default image (always there, not deletable) and, when the
 * engine has one, an image store's (pulled from registries or imported). Lookups, pulls,
 * deletes and what a create's `image` names, with every failure as it reaches the client.
 * Without a store the engine still has its default image; anything that needs a store is
 * refused with UNIMPLEMENTED.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  formatImageReference,
  type ImageReference,
  ImageReferenceError,
  isImageDigest,
  isImageId,
  parseImageReference,
} from "@sbx/proto";
import { imageFailure, imageStoreFailure } from "./image-errors.js";
import type { ImageRecord, ImageStore, PullOptions } from "./image-store.js";

/** A reference, parsed, or INVALID_ARGUMENT with the grammar's message. */
export function referenceOf(text: string): ImageReference {
  try {
    return parseImageReference(text);
  } catch (error) {
    if (error instanceof ImageReferenceError) throw imageFailure("invalid", error.message, {});
    throw error;
  }
}

export class EngineImages {
  constructor(
    /** The driver's default image. */
    readonly defaultImage: ImageRecord,
    readonly store: ImageStore | undefined,
  ) {}

  /** Whether `image` is the default image (started without a store's layers). */
  isDefault(image: ImageRecord): boolean {
    return image.id === this.defaultImage.id;
  }

  /** UNIMPLEMENTED: this engine has no image store (an sbx server whose store is not wired in yet). */
  #noStore(what: string): ConnectError {
    return imageFailure(
      "unsupported",
      `this server cannot ${what} yet: it has no image store, only its default image (${this.defaultImage.id})`,
    );
  }

  /** The default image first, then the store's. */
  async list(): Promise<ImageRecord[]> {
    if (!this.store) return [this.defaultImage];
    try {
      return [this.defaultImage, ...(await this.store.list())];
    } catch (error) {
      throw imageStoreFailure(error, {}, "listing images");
    }
  }

  /** An image by id, manifest digest or reference (any spelling of it), if there is one. */
  async find(selector: string): Promise<ImageRecord | undefined> {
    if (selector === this.defaultImage.id) return this.defaultImage;
    const key = isImageId(selector) || isImageDigest(selector) ? selector : formatImageReference(referenceOf(selector));
    if (!this.store) return undefined;
    try {
      return await this.store.get(key);
    } catch (error) {
      throw imageStoreFailure(error, { reference: key }, `looking up image ${key}`);
    }
  }

  /** As `find`, or NOT_FOUND naming what was asked for. */
  async get(selector: string): Promise<ImageRecord> {
    const image = await this.find(selector);
    if (!image) throw imageFailure("not-found", `image ${selector} not found`, { reference: selector });
    return image;
  }

  async pull(reference: ImageReference, options: PullOptions = {}): Promise<ImageRecord> {
    const canonical = formatImageReference(reference);
    if (!this.store) throw this.#noStore(`pull ${canonical}`);
    try {
      return await this.store.pull(reference, options);
    } catch (error) {
      throw imageStoreFailure(error, { registry: reference.registry, reference: canonical }, `pulling ${canonical}`);
    }
  }

  async importArchive(archive: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<ImageRecord> {
    if (!this.store) throw this.#noStore("import images");
    try {
      return await this.store.importArchive(archive, { signal });
    } catch (error) {
      throw imageStoreFailure(error, {}, "importing an image");
    }
  }

  /**
   * What a create's `image` names: the default image (empty), an image by id or digest, or a
   * reference — the image kept under it, else pulled now (as `docker run` does; credentials
   * for a private registry are given by pulling it first).
   */
  async resolve(image: string, signal?: AbortSignal): Promise<ImageRecord> {
    if (image === "") return this.defaultImage;
    if (isImageId(image) || isImageDigest(image)) return this.get(image);
    const reference = referenceOf(image);
    return (await this.find(formatImageReference(reference))) ?? (await this.pull(reference, { signal }));
  }

  /**
   * Removes an image: never the default one, nor one that `usedBy` (the running sandboxes
   * started from an image id) names. `release` lets the driver let go of it first.
   */
  async delete(
    id: string,
    usedBy: (imageId: string) => string | undefined,
    release?: (imageId: string) => Promise<void>,
  ): Promise<void> {
    if (id === this.defaultImage.id) {
      throw new ConnectError(`the default image (${id}) cannot be deleted`, Code.FailedPrecondition);
    }
    const user = usedBy(id);
    if (user) {
      throw imageFailure("in-use", `image ${id} is used by running sandbox ${user}: terminate it first`, {
        reference: id,
      });
    }
    if (!this.store || !(await this.find(id))) {
      throw imageFailure("not-found", `image ${id} not found`, { reference: id });
    }
    await release?.(id);
    try {
      await this.store.delete(id);
    } catch (error) {
      throw imageStoreFailure(error, { reference: id }, `deleting image ${id}`);
    }
  }
}
