import { createConnectTransport } from "@connectrpc/connect-web";
/**
 * A Connect transport for Bun talking to an sbx server at `endpoint`: the Connect protocol
 * (binary messages) over Bun's native `fetch`, which streams response bodies and keeps
 * connections alive. See the README for why not `@connectrpc/connect-node` under Bun.
 */
export function createBunTransport(endpoint, options = {}) {
  return createConnectTransport({
    baseUrl: endpoint,
    useBinaryFormat: true,
    fetch: options.fetch ?? globalThis.fetch,
  });
}
//# sourceMappingURL=transport.js.map
