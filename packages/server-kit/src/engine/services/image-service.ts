/**
 * ImageService: pull (progress, then the image), list (paged, newest first, the default image
 * among them), get, delete. The checks, the default image and the failures' codes are the
 * engine's (engine-images.ts, image-errors.ts); pulling and keeping images is the store's.
 */

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { PullImageResponseSchema } from "@sbx/proto";
import {
  credentialsProblem,
  DEFAULT_PAGE_SIZE,
  formatImageReference,
  type ImageService,
  imageIdProblem,
  imageSelectorProblem,
  MAX_PAGE_SIZE,
  type PullImageResponse,
} from "@sbx/proto";
import { invalid } from "../../validation.js";
import type { Engine } from "../engine.js";
import { referenceOf } from "../engine-images.js";
import type { ImageRecord, PullProgress, RegistryCredentials } from "../image-store.js";
import { imageToWire } from "./image-wire.js";

const check = (problem: string | undefined) => {
  if (problem) throw invalid(problem);
};

/** Newest first; images made at the same millisecond by id. */
const newestFirst = (a: ImageRecord, b: ImageRecord) =>
  b.createdAtMs - a.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

const encodeCursor = (image: ImageRecord) =>
  btoa(`img:${Math.trunc(image.createdAtMs)}:${image.id}`)
    .replace(/=+$/, "")
    .replace(/\+/g, "-")
    .replace(/\//g, "_");

/** The position a cursor names: images after it in `newestFirst` order come next. */
function decodeCursor(cursor: string): { createdAtMs: number; id: string } {
  let text = "";
  try {
    text = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {}
  const match = /^img:(\d+):(im-[a-z0-9-]+)$/.exec(text);
  if (!match) throw invalid("invalid list cursor");
  return { createdAtMs: Number(match[1]), id: match[2] as string };
}

type PullEvent = MessageInitShape<typeof PullImageResponseSchema>;

/**
 * The progress a pull reports, then its image: progress is sent as fast as the client takes
 * it, and reports made meanwhile are folded into the latest (never queued without bound).
 */
export async function* pullEvents(
  pull: (onProgress: (progress: PullProgress) => void) => Promise<ImageRecord>,
  builtin: (image: ImageRecord) => boolean,
): AsyncGenerator<PullEvent> {
  let latest: PullProgress | undefined;
  let wake: (() => void) | undefined;
  const pulling = pull((progress) => {
    latest = progress;
    wake?.();
  });
  let done = false;
  const finished = pulling.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  for (;;) {
    if (latest) {
      const { bytesDone, bytesTotal } = latest;
      latest = undefined;
      yield {
        event: {
          case: "progress",
          value: {
            bytesDone: BigInt(Math.max(0, Math.trunc(bytesDone))),
            bytesTotal: BigInt(Math.max(0, Math.trunc(bytesTotal))),
          },
        },
      };
      continue;
    }
    if (done) break;
    await Promise.race([finished, new Promise<void>((resolve) => (wake = resolve))]);
    wake = undefined;
  }
  const image = await pulling;
  yield { event: { case: "image", value: imageToWire(image, builtin(image)) } };
}

export function imageService(engine: Engine): ServiceImpl<typeof ImageService> {
  const images = engine.images;
  const builtin = (image: ImageRecord) => images.isDefault(image);
  return {
    async *pullImage(request, context) {
      const reference = referenceOf(request.reference);
      const given = request.credentials;
      let credentials: RegistryCredentials | undefined;
      if (given && (given.username !== "" || given.password !== "")) {
        check(credentialsProblem({ username: given.username, password: given.password }));
        credentials = { username: given.username, password: given.password };
      }
      engine.logger.info("pulling image", { reference: formatImageReference(reference) }); // never the credentials
      yield* pullEvents(
        (onProgress) => images.pull(reference, { credentials, onProgress, signal: context.signal }),
        builtin,
      ) as AsyncGenerator<PullImageResponse>;
    },

    async listImages(request) {
      const pageSize = Math.min(request.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
      const after = request.cursor ? decodeCursor(request.cursor) : undefined;
      const all = (await images.list()).sort(newestFirst);
      const rest = after
        ? all.filter(
            (i) => i.createdAtMs < after.createdAtMs || (i.createdAtMs === after.createdAtMs && i.id > after.id),
          )
        : all;
      const page = rest.slice(0, pageSize);
      const last = page[page.length - 1];
      return {
        images: page.map((image) => imageToWire(image, builtin(image))),
        nextCursor: rest.length > pageSize && last ? encodeCursor(last) : "",
      };
    },

    async getImage(request) {
      check(imageSelectorProblem(request.image));
      const image = await images.get(request.image);
      return { image: imageToWire(image, builtin(image)) };
    },

    async deleteImage(request) {
      check(imageIdProblem(request.imageId));
      await images.delete(
        request.imageId,
        (id) => engine.sandboxUsingImage(id),
        (id) => engine.runtime.releaseImage?.(id) ?? Promise.resolve(),
      );
      return {};
    },
  };
}
