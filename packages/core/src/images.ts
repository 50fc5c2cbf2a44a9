/**
 * `client.images`: images on the server (Modal's `Image.from_registry`, LangSmith's
 * `docker_image`). The operations load on first use (see load-on-first-use.ts): an app that
 * never touches images does not download them.
 */
import type { CallOptions } from "./call-options.js";
import type { EffectRunner } from "./effect-runner.js";
import { InvalidError } from "./errors.js";
import type { LocalImageFiles } from "./image-archive.js";
import type { Image, ImageConfig, ImportImageOptions, PullImageOptions, PullProgress } from "./image-ops.js";
import { loadOnFirstUse } from "./load-on-first-use.js";
import type { RawBody } from "./raw-routes.js";

export type { Image, ImageConfig, ImportImageOptions, PullImageOptions, PullProgress };

const imageOps = () => loadOnFirstUse(() => import("./image-ops.js"));

/** An image named by its id, or the image itself (as `fromRegistry`, `list` and `get` give it). */
export type ImageLike = string | Image;

/** An archive for `importArchive`: its bytes, a Blob (a browser's File), or its pieces as they are read. */
export type ImageArchive = RawBody;

export class Images {
  readonly #runner: EffectRunner;

  /** @internal */
  constructor(runner: EffectRunner) {
    this.#runner = runner;
  }

  /**
   * Pulls an image from its registry for the server's platform, once: later calls (and
   * sandboxes created from it) use what the server keeps; a tag is looked up in the registry
   * again, a digest is not. A reference without a registry means Docker Hub
   * ("python:3.12-slim" is "docker.io/library/python:3.12-slim"). A malformed reference is an
   * `InvalidError` before any request; an unknown repository or tag a `NotFoundError`;
   * refused credentials an `AuthenticationError` whose `registry` names the registry.
   */
  async fromRegistry(reference: string, options: PullImageOptions & CallOptions = {}): Promise<Image> {
    const { signal, ...pull } = options ?? {};
    const { pullImage } = await imageOps();
    return this.#runner.run(pullImage(reference, pull), signal);
  }

  /** Every image the server keeps, newest first (its default image among them), fetched page by page. */
  async *list(options: CallOptions = {}): AsyncGenerator<Image> {
    const { listImages } = await imageOps();
    yield* this.#runner.iterate(listImages(), options.signal);
  }

  /** An image by id, manifest digest or reference; `NotFoundError` if the server has none. */
  async get(image: string, options: CallOptions = {}): Promise<Image> {
    const { getImage } = await imageOps();
    return this.#runner.run(getImage(image), options.signal);
  }

  /**
   * Removes an image from the server (and the layers no other image uses). The default image
   * cannot be deleted, nor an image a running sandbox uses (`FailedPreconditionError`).
   */
  async delete(image: ImageLike, options: CallOptions = {}): Promise<void> {
    const { deleteImage } = await imageOps();
    await this.#runner.run(deleteImage(image), options.signal);
  }

  /**
   * Imports an image archive — an OCI image layout, tarred, or a `docker save` tarball — given
   * as bytes, a Blob (e.g. a file a page's user picked) or pieces as they are read, streamed to
   * the server over raw HTTP (not through an in-process transport). In browsers a streamed
   * source needs HTTP/2 to the server; a Blob works over any connection.
   */
  async importArchive(archive: ImageArchive, options: ImportImageOptions & CallOptions = {}): Promise<Image> {
    const { signal, ...rest } = options ?? {};
    const { importImageArchive } = await imageOps();
    return this.#runner.run(importImageArchive(archive, rest), signal);
  }
}

/**
 * `client.images` in runtimes with local files (Node, Deno, Bun): everything of `Images`,
 * plus `import(path)` of a local archive.
 */
export class LocalImages extends Images {
  readonly #local: LocalImageFiles;

  /** @internal */
  constructor(runner: EffectRunner, local: LocalImageFiles) {
    super(runner);
    this.#local = local;
  }

  /**
   * Imports an image from a local path: an OCI image layout directory (tarred on the fly) or a
   * tarball (`docker save`, or an OCI layout already tarred), streamed to the server.
   */
  async import(path: string, options: ImportImageOptions & CallOptions = {}): Promise<Image> {
    if (typeof path !== "string" || path === "")
      throw new InvalidError("import needs the path of an archive or an OCI layout directory");
    const { localArchive } = await loadOnFirstUse(() => import("./image-archive.js"));
    const pieces = (await localArchive(this.#local, path))[Symbol.asyncIterator]();
    try {
      return await this.importArchive({ [Symbol.asyncIterator]: () => pieces }, options);
    } finally {
      // Closes the local file at once when the upload failed (a no-op after its end).
      pieces.return?.()?.catch(() => {});
    }
  }
}

/** Builds `client.images` (see `ClientDefaults.localImages`). */
export type ImagesFactory = (runner: EffectRunner) => Images;

/** `client.images` with `import(path)` through the runtime's `files`. */
export const localImages =
  (files: LocalImageFiles): ImagesFactory =>
  (runner) =>
    new LocalImages(runner, files);
