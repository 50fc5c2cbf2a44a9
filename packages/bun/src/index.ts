/**
 * @sbx/bun — the sbx client for Bun: everything from @sbx/core, with the Connect protocol over
 * Bun's `fetch`, local files through `Bun.file`, and configuration from SBX_ENDPOINT / SBX_TOKEN.
 */
import { Sandbox as CoreSandbox, type LocalSandbox } from "@sbx/core";

export * from "@sbx/core";
/** A sandbox; in Bun its `filesystem` also copies to and from local paths (`LocalSandbox`). */
export type Sandbox = LocalSandbox;
export const Sandbox = CoreSandbox;
export { type BunSandboxClientOptions, SandboxClient } from "./client.js";
export { type BunTransportOptions, createBunTransport } from "./transport.js";
