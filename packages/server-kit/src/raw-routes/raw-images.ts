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
  type RawCallHook,
  type RawRequest,
  startBody,
  tokenRoute,
  unservedRaw,
} from "./http-answers.js";

/**
 * The request body's pieces; a body cut short fails instead of ending. Read without the
 * stream's async iterator, whose early `return()` (a store that stops reading) would destroy
 * the request, and the connection the answer goes out on with it.
 */
async function* bodyOf(req: RawRequest): AsyncGenerator<Uint8Array> {
  const stream = req as unknown as NodeJS.ReadableStream & {
    readonly readableEnded: boolean;
    readonly destroyed: boolean;
  };
  for (;;) {
    const piece = stream.read() as Uint8Array | null;
    if (piece !== null) {
      yield piece;
      continue;
    }
    if (stream.readableEnded || stream.destroyed) break;
    await new Promise<void>((resolve) => {
      const done = () => {
        stream.off("readable", done);
        stream.off("end", done);
        stream.off("close", done);
        stream.off("error", done);
        resolve();
      };
      stream.on("readable", done);
      stream.on("end", done);
      stream.on("close", done);
      stream.on("error", done);
    });
  }
  if (!req.complete) throw new Error("the archive's upload was cut short");
}

/** Most of an unread body dropped before a refusal is answered; past it the connection closes. */
const MAX_DRAINED_BYTES = 1024 * 1024 * 1024;

/**
 * Reads and drops what is left of a body the import did not take (it was refused, failed
 * midway, or the store stopped at the archive's end): a client still sending then reads the answer, where an answer before the end of the
 * body closes the connection under it (see listen.ts) and some clients (Deno's and Bun's
 * `fetch`) report only that. Bounded: past MAX_DRAINED_BYTES the connection closes anyway.
 */
async function drain(req: RawRequest): Promise<void> {
  let dropped = 0;
  try {
    for await (const piece of bodyOf(req)) {
      dropped += piece.byteLength;
      if (dropped > MAX_DRAINED_BYTES) return;
    }
  } catch {
    // The client went away: nobody is left to answer.
  }
}

/** A method other than POST. */
class WrongMethod extends ConnectError {
  constructor() {
    super("an image archive is imported with POST", Code.Unimplemented);
  }
}

export function rawImagesRoute(engine: Engine, authorize: Authorize, hook?: RawCallHook): PlainRoute {
  return tokenRoute("images", RAW_IMAGE_IMPORT_PATH, authorize, {
    async serve(req, res, url, signal) {
      try {
        if (url.pathname !== RAW_IMAGE_IMPORT_PATH) throw new ConnectError("no such images route", Code.NotFound);
        if (req.method !== "POST") throw new WrongMethod();
        const plan = await hook?.("ImportImage");
        if (plan?.unserved) return unservedRaw(res);
        if (plan?.fail) throw plan.fail;
        const image = await engine.images.importArchive(bodyOf(req), signal);
        await drain(req); // what the store left unread (a tar's trailing padding, say)
        engine.logger.info("imported image", { id: image.id, refs: image.refs.join(" ") });
        const wire = create(ImageSchema, imageToWire(image, engine.images.isDefault(image)));
        startBody(res, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(JSON.stringify({ image: toJson(ImageSchema, wire) }));
      } catch (error) {
        // An authorized client gets its answer; one refused for its token never gets here, and
        // its body is not read.
        await drain(req);
        throw error;
      }
    },
    // Not `instanceof WrongMethod`: ConnectError's Symbol.hasInstance, which subclasses inherit,
    // takes every ConnectError for one.
    statusOf: (error) =>
      error instanceof Error && error.constructor === WrongMethod ? RAW_STATUS.methodNotAllowed : undefined,
  });
}
