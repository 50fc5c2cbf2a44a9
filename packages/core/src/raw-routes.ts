/**
 * Raw HTTP (client side): bulk bytes as plain HTTP bodies beside Connect, several times the
 * throughput of the same bytes in protobuf messages.
 * - output: `GET /sbx.v1/output/{sandboxId}/{processId}/{stream}?offset=N`, a process stream's
 *   bytes, following live output. It has no end marker: when the body ends, the reader asks
 *   ReadOutput (Connect) from where it got to for the end marker.
 * - files: `GET /sbx.v1/files/{sandboxId}?path=&offset=N` (a file from an offset) and
 *   `PUT /sbx.v1/files/{sandboxId}?path=&upload=&offset=N[&finish=1]` (one upload chunk).
 * - images: `POST /sbx.v1/images/import` (an image archive, streamed as one body).
 *
 * Adapters supply the HTTP client (`RawHttpClient`); `fetchRawHttp` (fetch-raw-http.ts) works
 * wherever `fetch` streams response bodies. Every answer of a raw route carries `x-sbx-raw: <route>`; an
 * answer without it means the server lacks the route (an older server, or the fake), and
 * the client stops asking and uses Connect for that route.
 */
import type { RawRoute } from "@sbx/proto";

// The routes' contract (paths, header, query, statuses) lives beside the protocol.
export { RAW_HEADER, RAW_IMAGE_IMPORT_PATH, type RawRoute, rawFilePath, rawOutputPath } from "@sbx/proto";

export interface RawRequest {
  readonly route: RawRoute;
  /** Path and query, to be appended to the endpoint. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
}

/** A streamed request body: bytes, a Blob (a browser's File), or pieces as they are read. */
export type RawBody = Uint8Array | Blob | AsyncIterable<Uint8Array>;

/** A raw route's answer to a PUT (or a failed GET): status and JSON body. */
export interface RawAnswer {
  readonly status: number;
  readonly json: unknown;
}

export interface RawHttpClient {
  /**
   * GET: the body's chunks, or undefined when the answer was not 200 (and from then on at
   * once, when the answer showed the server lacks the route). Rejects on network failure.
   */
  get(request: RawRequest): Promise<AsyncIterable<Uint8Array> | undefined>;
  /**
   * PUT `body` (its pieces, in order): the answer (any status; JSON body), or undefined when
   * the server lacks the route (and from then on at once). Rejects on network failure.
   */
  put(request: RawRequest & { readonly body: readonly Uint8Array[] }): Promise<RawAnswer | undefined>;
  /**
   * POST `body`, streamed as it is read (a piece may be reused by its source once the next is
   * asked for): the answer (any status; JSON body), or undefined when the server lacks the
   * route. The answer may come before the whole body was sent (a refusal): sending then stops.
   * Rejects on network failure. Absent: this client cannot stream a request body.
   */
  post?(request: RawRequest & { readonly body: RawBody }): Promise<RawAnswer | undefined>;
  /** Releases pooled connections (called when the client closes). */
  close?(): void;
}

/** The endpoint without a trailing slash, so a path can be appended. */
export const endpointBase = (endpoint: string): string => endpoint.replace(/\/+$/, "");

/** Which raw routes a server has shown it lacks. */
export class RawRouteMemo {
  readonly #missing = new Set<RawRoute>();
  missing(route: RawRoute): boolean {
    return this.#missing.has(route);
  }
  /** Notes the answer's marker header: absent means the server has no such route. */
  saw(route: RawRoute, marker: string | null | undefined): boolean {
    if (marker === route) return true;
    this.#missing.add(route);
    return false;
  }
}

/** A raw route's JSON answer; a body that is not JSON (a proxy's error page, say) as an unknown error. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { code: "unknown", message: text.slice(0, 200) };
  }
}
