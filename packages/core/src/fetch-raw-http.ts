/**
 * Raw HTTP over the runtime's `fetch` (browsers, workers, Deno, Bun): the `RawHttpClient` of
 * raw-routes.ts. Its streamed POST (raw-post.ts) is loaded on first use.
 */
import { RAW_HEADER, RAW_STATUS } from "@sbx/proto";
import { endpointBase, parseJson, type RawHttpClient, RawRouteMemo } from "./raw-routes.js";

/** A `RawHttpClient` over `fetchImpl`, for the server at `endpoint`. */
export function fetchRawHttp(endpoint: string, fetchImpl: typeof fetch = globalThis.fetch): RawHttpClient {
  const base = endpointBase(endpoint);
  const memo = new RawRouteMemo();
  return {
    async get({ route, path, headers, signal }) {
      if (memo.missing(route)) return undefined;
      const response = await fetchImpl(base + path, { headers, signal, cache: "no-store" });
      if (response.status !== RAW_STATUS.ok || !response.body) {
        memo.saw(route, response.headers.get(RAW_HEADER));
        await response.body?.cancel().catch(() => {});
        return undefined;
      }
      const body = response.body;
      return {
        async *[Symbol.asyncIterator]() {
          const reader = body.getReader();
          try {
            for (;;) {
              const { done, value } = await reader.read();
              if (done) return;
              if (value.byteLength > 0) yield value;
            }
          } finally {
            reader.releaseLock();
            await body.cancel().catch(() => {});
          }
        },
      };
    },
    async put({ route, path, headers, signal, body }) {
      if (memo.missing(route)) return undefined;
      const response = await fetchImpl(base + path, {
        method: "PUT",
        headers: { ...headers, "content-type": "application/octet-stream" },
        body: new Blob(body as Uint8Array<ArrayBuffer>[]),
        signal,
        cache: "no-store",
      });
      const text = await response.text();
      if (!memo.saw(route, response.headers.get(RAW_HEADER))) return undefined;
      return { status: response.status, json: parseJson(text) };
    },
    // Only image imports post: the code loads on first use.
    post: (request) => import("./raw-post.js").then(({ fetchPost }) => fetchPost(base, fetchImpl, memo, request)),
  };
}
