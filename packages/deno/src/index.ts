/**
 * @sbx/deno — the sbx client for Deno: everything from @sbx/core, with the Connect protocol
 * over Deno's `fetch`, local files through Deno's file API, and configuration from
 * SBX_ENDPOINT / SBX_TOKEN.
 */
import { Sandbox as CoreSandbox, type LocalSandbox } from "@sbx/core";

export * from "@sbx/core";
/** A sandbox; in Deno its `filesystem` also copies to and from local paths (`LocalSandbox`). */
export type Sandbox = LocalSandbox;
export const Sandbox = CoreSandbox;
export { type DenoSandboxClientOptions, SandboxClient } from "./client.ts";
export { createDenoTransport, type DenoTransportOptions } from "./transport.ts";
