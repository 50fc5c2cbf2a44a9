/**
 * @sbx/node — the sbx client for Node.js: everything from @sbx/core, with a Connect/gRPC
 * transport over HTTP/1.1 or HTTP/2 and configuration from SBX_ENDPOINT / SBX_TOKEN.
 */
import { Sandbox as CoreSandbox, type LocalSandbox } from "@sbx/core";

export * from "@sbx/core";
/** A sandbox; in Node its `filesystem` also copies to and from local paths (`LocalSandbox`). */
export type Sandbox = LocalSandbox;
export const Sandbox = CoreSandbox;
export { type NodeSandboxClientOptions, SandboxClient } from "./client.js";
export { createNodeTransport, type NodeTransportOptions } from "./transport.js";
