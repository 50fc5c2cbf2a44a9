/**
 * The raw output stream (client side): a process stream's bytes as a plain HTTP body from
 * `GET {endpoint}/sbx.v1/output/{sandboxId}/{processId}/{stream}?offset=N`. Several times the
 * throughput of ReadOutput over Connect, which encodes every chunk into protobuf messages.
 * The body has no end marker: when it ends, the reader finishes with ReadOutput from where
 * it got to, which returns the end marker (and any bytes the body did not carry).
 *
 * Adapters supply the HTTP client (`RawOutputReader`); `fetchRawOutput` works wherever
 * `fetch` streams response bodies. A server without the route (or any non-200 answer) makes
 * the read fall back to ReadOutput, which reports problems as typed errors.
 */

export interface RawOutputRequest {
  /** Path and query, to be appended to the endpoint. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
}

/** The header every answer of the raw output route carries (see the server's raw-output.ts). */
export const RAW_OUTPUT_HEADER = "x-sbx-output";

export interface RawOutputReader {
  /**
   * The body's chunks, or undefined when the server did not answer 200 (and from then on at
   * once, when its answer showed it has no raw output route). Rejects on network failure.
   */
  open(request: RawOutputRequest): Promise<AsyncIterable<Uint8Array> | undefined>;
  /** Releases pooled connections (called when the client closes). */
  close?(): void;
}

export function rawOutputPath(sandboxId: string, processId: string, stream: "stdout" | "stderr", offset: number) {
  const e = encodeURIComponent;
  return `/sbx.v1/output/${e(sandboxId)}/${e(processId)}/${stream}?offset=${offset}`;
}

/** The endpoint without a trailing slash, so a path can be appended. */
export const endpointBase = (endpoint: string): string => endpoint.replace(/\/+$/, "");

/** A raw output reader over the runtime's `fetch` (browsers, workers, Deno, Bun). */
export function fetchRawOutput(endpoint: string, fetchImpl: typeof fetch = globalThis.fetch): RawOutputReader {
  const base = endpointBase(endpoint);
  let unsupported = false;
  return {
    async open({ path, headers, signal }) {
      if (unsupported) return undefined;
      const response = await fetchImpl(base + path, { headers, signal, cache: "no-store" });
      if (response.status !== 200 || !response.body) {
        if (!response.headers.has(RAW_OUTPUT_HEADER)) unsupported = true;
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
  };
}
