/**
 * The raw files route: file contents as plain HTTP bodies, for throughput (the same bytes
 * through Connect pay for protobuf framing per message, and cap near 100 MB/s here).
 *
 *   GET /sbx.v1/files/{sandboxId}?path=/abs/path&offset=N
 *     200 with the file's bytes from `offset` to its end. A body cut short is resumed by the
 *     client with a new GET from where it got to.
 *   PUT /sbx.v1/files/{sandboxId}?path=/abs/path&upload=ID&offset=N[&finish=1]
 *     One upload chunk, as WriteFile (server-kit's Uploads) but of any size and streamed: a body
 *     cut mid-way keeps what arrived, and the client resumes at the committed offset.
 *     200 with {"committedOffset": n, "finished": bool}.
 *
 * Errors are Connect JSON errors (with the FilesystemError detail), every answer carries
 * `x-sbx-raw: files` (see http-answers.ts). The same checks as FilesystemService apply.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { parseRawOffset, RAW_FILES_PREFIX, RAW_OFFSET_HEADER, RAW_QUERY, RAW_STATUS } from "@sbx/proto";
import type { Engine } from "../engine/engine.js";
import { filesOf, fsCall, startUpload } from "../engine/services/filesystem-calls.js";
import type { PlainRoute } from "../listen.js";
import { checkId } from "../validation.js";
import {
  type Authorize,
  declineRaw,
  type RawCallHook,
  type RawRequest,
  startBody,
  tokenRoute,
  unservedRaw,
  writeBodyFlushed,
} from "./http-answers.js";

function offsetOf(url: URL): number {
  const text = url.searchParams.get(RAW_QUERY.offset) ?? "0";
  const offset = parseRawOffset(text);
  if (offset === undefined) {
    throw new ConnectError(`offset must be a byte offset, got ${JSON.stringify(text)}`, Code.InvalidArgument);
  }
  return offset;
}

/** The request body's pieces; a body cut short fails instead of ending. */
async function* bodyOf(req: RawRequest): AsyncGenerator<Uint8Array> {
  for await (const piece of req as AsyncIterable<Uint8Array>) yield piece;
  if (!req.complete) throw new Error("the request body was cut short");
}

export function rawFilesRoute(engine: Engine, authorize: Authorize, hook?: RawCallHook): PlainRoute {
  return tokenRoute("files", RAW_FILES_PREFIX, authorize, {
    async serve(req, res, url, signal) {
      const sandboxId = decodeURIComponent(url.pathname.slice(RAW_FILES_PREFIX.length));
      const path = url.searchParams.get(RAW_QUERY.path) ?? "";
      const offset = offsetOf(url);
      if (req.method !== "GET" && req.method !== "PUT") {
        throw new ConnectError("files are read with GET and written with PUT", Code.Unimplemented);
      }
      const plan = await hook?.(req.method === "GET" ? "ReadFile" : "WriteFile");
      if (plan?.unserved) return unservedRaw(res);
      if (plan?.decline) return declineRaw(res, req.method === "GET" ? "ReadFile" : "WriteFile");
      if (req.method === "GET") {
        const { fs } = filesOf(engine, sandboxId, path);
        const chunks = await fsCall(path, () => fs.read(path, offset, signal));
        startBody(res, {
          "content-type": "application/octet-stream",
          "cache-control": "no-store",
          [RAW_OFFSET_HEADER]: String(offset),
        });
        // Each piece is sent before the next is asked for: the reader reuses its memory.
        for await (const data of chunks) await writeBodyFlushed(res, data, signal);
        res.end();
      } else {
        const { sandbox, fs } = filesOf(engine, sandboxId, path);
        const uploadId = url.searchParams.get(RAW_QUERY.upload) ?? "";
        checkId(uploadId, "upload id");
        const result = await engine.uploads.apply({
          sandboxId: sandbox.info.id,
          path,
          start: () => startUpload(fs, path),
          uploadId,
          offset,
          data: bodyOf(req),
          finish: url.searchParams.get(RAW_QUERY.finish) === "1",
        });
        startBody(res, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(JSON.stringify(result));
      }
    },
    statusOf: (error) =>
      error instanceof ConnectError && error.code === Code.Unimplemented ? RAW_STATUS.methodNotAllowed : undefined,
  });
}
