/**
 * The raw HTTP routes' contract (hand-written, beside the generated code): plain HTTP bodies
 * beside Connect, for bytes in bulk. The server serves them, clients build their requests
 * from here, and the conformance suite checks both against this module. Browser-safe.
 *
 *   GET /sbx.v1/output/{sandboxId}/{processId}/{stdout|stderr}?offset=N
 *     200: the stream's bytes from `offset`, following live output; the body ends when the
 *     stream has ended (no end marker: the client asks ReadOutput from where it got to).
 *   GET /sbx.v1/files/{sandboxId}?path=/abs/path&offset=N
 *     200: the file's bytes from `offset` to its end.
 *   PUT /sbx.v1/files/{sandboxId}?path=/abs/path&upload=ID&offset=N[&finish=1]
 *     One upload chunk (as WriteFile, of any size); 200 with {"committedOffset": n, "finished": bool}.
 *   POST /sbx.v1/images/import
 *     The body is an image archive, one tar stream: an OCI image layout (its directory, tarred)
 *     or a `docker save` tarball. 200 with {"image": Image} (sbx.v1.Image as proto3 JSON) once
 *     the image is stored. Not resumable: a body cut short imports nothing.
 *
 * Every answer carries `x-sbx-raw: <route>` (so a client tells "no such file" from "no such
 * route": an answer without it means the server lacks the route). A 200 GET carries
 * `x-sbx-offset: N`, the offset its body starts at. Errors are Connect's JSON error format
 * with the statuses in RAW_STATUS.
 */

/** The raw routes; each answer's RAW_HEADER names its route. */
export type RawRoute = "output" | "files" | "images";

/** The header every answer of a raw route carries; its value is the route's name. */
export const RAW_HEADER = "x-sbx-raw";
/** The header of a 200 GET answer: the byte offset its body starts at. */
export const RAW_OFFSET_HEADER = "x-sbx-offset";

export const RAW_OUTPUT_PREFIX = "/sbx.v1/output/";
export const RAW_FILES_PREFIX = "/sbx.v1/files/";
/** The images route's one path (POST). */
export const RAW_IMAGE_IMPORT_PATH = "/sbx.v1/images/import";

/** Query parameter names. */
export const RAW_QUERY = {
  /** Byte offset (decimal digits); default 0. */
  offset: "offset",
  /** The file's absolute path (files). */
  path: "path",
  /** The upload's client-chosen id (files, PUT). */
  upload: "upload",
  /** `1` on an upload's last chunk (files, PUT). */
  finish: "finish",
} as const;

/** The statuses the raw routes answer with (errors carry a Connect JSON error body). */
export const RAW_STATUS = {
  ok: 200,
  /** A malformed offset, path or upload id (INVALID_ARGUMENT). */
  badRequest: 400,
  /** Missing or wrong bearer token (UNAUTHENTICATED). */
  unauthorized: 401,
  /** No such sandbox, process, stream or file (NOT_FOUND). */
  notFound: 404,
  /** A method the route does not take (output: GET only; files: GET and PUT; images: POST only). */
  methodNotAllowed: 405,
  /** An output offset past the end of an ended stream, or dropped by retention (OUT_OF_RANGE). */
  rangeNotSatisfiable: 416,
  /** A server without an image store (UNIMPLEMENTED), for the images route. */
  notImplemented: 501,
} as const;

export type RawOutputStream = "stdout" | "stderr";

const e = encodeURIComponent;

/** Path and query of the raw output route. */
export const rawOutputPath = (sandboxId: string, processId: string, stream: RawOutputStream, offset: number): string =>
  `${RAW_OUTPUT_PREFIX}${e(sandboxId)}/${e(processId)}/${stream}?${RAW_QUERY.offset}=${offset}`;

/** Path and query of the raw files route (with `upload` for a PUT). */
export const rawFilePath = (
  sandboxId: string,
  path: string,
  offset: number,
  upload?: { readonly id: string; readonly finish: boolean },
): string =>
  `${RAW_FILES_PREFIX}${e(sandboxId)}?${RAW_QUERY.path}=${e(path)}&${RAW_QUERY.offset}=${offset}` +
  (upload ? `&${RAW_QUERY.upload}=${e(upload.id)}${upload.finish ? `&${RAW_QUERY.finish}=1` : ""}` : "");

/**
 * The parts of a raw output route's pathname, or undefined when it names no output stream.
 * The pathname must start with RAW_OUTPUT_PREFIX.
 */
export function parseRawOutputPath(
  pathname: string,
): { readonly sandboxId: string; readonly processId: string; readonly stream: RawOutputStream } | undefined {
  const [sandboxId, processId, stream] = pathname.slice(RAW_OUTPUT_PREFIX.length).split("/").map(decodeURIComponent);
  if (!sandboxId || !processId || (stream !== "stdout" && stream !== "stderr")) return undefined;
  return { sandboxId, processId, stream };
}

/** The byte offset of a raw route's query (absent → 0), or undefined when it is not one. */
export function parseRawOffset(text: string | null): number | undefined {
  const value = text ?? "0";
  const offset = Number(value);
  return /^\d+$/.test(value) && Number.isSafeInteger(offset) ? offset : undefined;
}
