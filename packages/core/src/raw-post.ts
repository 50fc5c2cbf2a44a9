/** A streamed POST over `fetch` (raw HTTP, fetch-raw-http.ts), loaded on first use: only image imports post. */
import { RAW_HEADER } from "@sbx/proto";
import { parseJson, type RawAnswer, type RawBody, type RawRequest, type RawRouteMemo } from "./raw-routes.js";

export async function fetchPost(
  base: string,
  fetchImpl: typeof fetch,
  memo: RawRouteMemo,
  { route, path, headers, signal, body }: RawRequest & { readonly body: RawBody },
): Promise<RawAnswer | undefined> {
  if (memo.missing(route)) return undefined;
  const streamed = !(body instanceof Uint8Array || body instanceof Blob);
  const response = await fetchImpl(base + path, {
    method: "POST",
    headers: { ...headers, "content-type": "application/octet-stream" },
    body: streamed ? readableOf(body) : (body as BodyInit),
    signal,
    cache: "no-store",
    // A streamed request body (Deno, Bun, Node; browsers over HTTP/2 only).
    ...(streamed ? { duplex: "half" } : {}),
  } as RequestInit);
  const text = await response.text();
  if (!memo.saw(route, response.headers.get(RAW_HEADER))) return undefined;
  return { status: response.status, json: parseJson(text) };
}

/** Pieces as a ReadableStream for `fetch`, each copied (its source may reuse its memory). */
function readableOf(pieces: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iterator = pieces[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await iterator.next();
      if (done) controller.close();
      else controller.enqueue(value.slice());
    },
    async cancel() {
      await iterator.return?.();
    },
  });
}
