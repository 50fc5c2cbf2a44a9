import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

export interface DenoTransportOptions {
  /**
   * Move bulk bytes (process output, file contents) as plain HTTP bodies beside Connect
   * (default true), several times faster than protobuf messages. False: everything through
   * the Connect protocol.
   */
  readonly rawHttp?: boolean;
  /** The `fetch` to use (default: Deno's global `fetch`), e.g. one bound to a `Deno.HttpClient`. */
  readonly fetch?: typeof fetch;
}

/** A Connect transport over Deno's `fetch` talking to an sbx server at `endpoint`. */
export function createDenoTransport(endpoint: string, options: DenoTransportOptions = {}): Transport {
  return createConnectTransport({
    baseUrl: endpoint,
    // Binary protobuf, not connect-web's default JSON: smaller and faster to encode.
    useBinaryFormat: true,
    // Looked up per call, so a `globalThis.fetch` replaced later (e.g. by a test) is used.
    fetch: options.fetch ?? ((input, init) => globalThis.fetch(input, init)),
  });
}
