import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { withConnectClients } from "@sbx/core/connect";
import { type FetchFunction, globalFetch } from "./fetch.js";

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
 * A Connect transport (`@connectrpc/connect-web`, binary) for an sbx server at `endpoint`, for
 * code that wants one: `SandboxClient` does not need it (it speaks the Connect protocol with
 * its own small client) and accepts it as `{ transport }`. Using it brings Connect and
 * protobuf-es into the bundle.
 */
export function createWebTransport(endpoint: string, options: Pick<WebTransportOptions, "fetch"> = {}): Transport {
  return withConnectClients(
    createConnectTransport({
      baseUrl: endpoint,
      useBinaryFormat: true,
      // connect-web only ever calls it as fetch(input, init).
      fetch: (options.fetch ?? globalFetch) as typeof globalThis.fetch,
    }),
  );
}
