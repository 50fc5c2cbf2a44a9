import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

/** What `@sbx/web` needs of `fetch` (any function with its call signature will do). */
export type FetchFunction = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

/** `fetch` as looked up at each call (so a later polyfill or test stub applies). */
export const globalFetch: FetchFunction = (input, init) => globalThis.fetch(input, init);

export interface WebTransportOptions {
  /**
   * Move bulk bytes (process output, file contents) as plain HTTP bodies over `fetch` beside
   * Connect (default true), several times faster than protobuf messages. False: everything
   * through Connect.
   */
  readonly rawHttp?: boolean;
  /**
   * The `fetch` to use (default: the global one at call time), e.g. one that sets
   * `credentials` or goes through a service worker.
   */
  readonly fetch?: FetchFunction;
}

/**
 * A Connect transport for browsers and web workers talking to an sbx server at `endpoint`:
 * the Connect protocol (binary) over `fetch`, so unary and server-streaming calls only —
 * which is all `@sbx/web` uses.
 */
export function createWebTransport(endpoint: string, options: Pick<WebTransportOptions, "fetch"> = {}): Transport {
  return createConnectTransport({
    baseUrl: endpoint,
    useBinaryFormat: true,
    // connect-web only ever calls it as fetch(input, init).
    fetch: (options.fetch ?? globalFetch) as typeof globalThis.fetch,
  });
}
