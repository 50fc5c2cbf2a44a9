import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

export interface BunTransportOptions {
  /**
   * Move bulk bytes (process output, file contents) as plain HTTP bodies beside Connect
   * (default true), several times faster than protobuf messages. False: everything through
   * Connect.
   */
  readonly rawHttp?: boolean;
  /** The `fetch` to use (default: Bun's own `fetch`), e.g. one that adds headers or TLS options. */
  readonly fetch?: typeof globalThis.fetch;
}

/**
 * A Connect transport for Bun talking to an sbx server at `endpoint`: the Connect protocol
 * (binary messages) over Bun's native `fetch`, which streams response bodies and keeps
 * connections alive. See the README for why not `@connectrpc/connect-node` under Bun.
 */
export function createBunTransport(endpoint: string, options: BunTransportOptions = {}): Transport {
  return createConnectTransport({
    baseUrl: endpoint,
    useBinaryFormat: true,
    fetch: options.fetch ?? globalThis.fetch,
  });
}
