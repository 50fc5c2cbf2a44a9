export { createLocalRuntime, type LocalRuntimeOptions, type LocalSandboxRuntime } from "./local-runtime.js";
export type { SandboxNetworkOptions } from "./network/network-options.js";
export type { LayerSource } from "./sandbox-root.js";
