/**
 * @sbx/web — the sbx client for browsers and web workers: everything from @sbx/core, with
 * the Connect protocol over `fetch`. No local files and no local TCP tunnels (a page has
 * neither); everything else is the same API as @sbx/node.
 */
export * from "@sbx/core";
export { withConnectClients } from "@sbx/core/connect";
export { SandboxClient, type WebSandboxClientOptions } from "./client.js";
export type { FetchFunction } from "./fetch.js";
export { createWebTransport, type WebTransportOptions } from "./transport.js";
