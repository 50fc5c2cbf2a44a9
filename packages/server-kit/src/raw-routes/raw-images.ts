/**
 * The raw images route: an image archive (an OCI image layout, tarred, or a `docker save`
 * tarball) as one streamed request body, handed to the image store as it arrives.
 *
 *   POST /sbx.v1/images/import
 *     200 with {"image": Image} (sbx.v1.Image as proto3 JSON) once the image is stored.
 *
 * Not resumable: a body cut short imports nothing (the store drops what it had unpacked).
 * Errors are Connect JSON errors (with the ImageError detail); every answer carries
 * `x-sbx-raw: images`; a server without an image store answers 501 (UNIMPLEMENTED).
 */
import { create, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ImageSchema, RAW_IMAGE_IMPORT_PATH, RAW_STATUS } from "@sbx/proto";
import type { Engine } from "../engine/engine.js";
import { imageToWire } from "../engine/services/image-wire.js";
import type { PlainRoute } from "../listen.js";
import {
  type Authorize,
  clientSignal,
  failRaw,
  markRaw,
  type RawCallHook,
  type RawRequest,
  startBody,
  unservedRaw,
} from "./http-answers.js";

/** The request body's pieces; a body cut short fails instead of ending. */
async function* bodyOf(req: RawRequest): AsyncGenerator<Uint8Array> {
  for await (const piece of req as AsyncIterable<Uint8Array>) yield piece;
  if (!req.complete) throw new Error("the archive's upload was cut short");
}

/** A method other than POST. */
class WrongMethod extends ConnectError {
  constructor() {
    super("an image archive is imported with POST", Code.Unimplemented);
  }
}

export function rawImagesRoute(engine: Engine, authorize: Authorize, hook?: RawCallHook): PlainRoute {
  return {
    prefix: RAW_IMAGE_IMPORT_PATH,
    async handle(req, res) {
      markRaw(res, "images");
      const signal = clientSignal(res); // first: a client gone during the hook is still seen
      try {
        if (!authorize(req.headers.authorization))
          throw new ConnectError("missing or wrong bearer token", Code.Unauthenticated);
        const url = new URL(req.url ?? "/", "http://sbx");
        if (url.pathname !== RAW_IMAGE_IMPORT_PATH) throw new ConnectError("no such images route", Code.NotFound);
        if (req.method !== "POST") throw new WrongMethod();
        const plan = await hook?.("ImportImage");
        if (plan?.unserved) return unservedRaw(res);
        if (plan?.fail) throw plan.fail;
        const image = await engine.images.importArchive(bodyOf(req), signal);
        engine.logger.info("imported image", { id: image.id, refs: image.refs.join(" ") });
        const wire = create(ImageSchema, imageToWire(image, engine.images.isDefault(image)));
        startBody(res, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(JSON.stringify({ image: toJson(ImageSchema, wire) }));
      } catch (error) {
        failRaw(res, error, error instanceof WrongMethod ? RAW_STATUS.methodNotAllowed : undefined);
      }
    },
  };
}
