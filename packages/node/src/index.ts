/**
 * @sbx/node — the sbx client for Node.js: everything from @sbx/core, with a Connect/gRPC
 * transport over HTTP/1.1 or HTTP/2 and configuration from SBX_ENDPOINT / SBX_TOKEN.
 */
export * from "@sbx/core";
export { type NodeSandboxClientOptions, SandboxClient } from "./client.js";
export { createNodeTransport, type NodeTransportOptions } from "./transport.js";
