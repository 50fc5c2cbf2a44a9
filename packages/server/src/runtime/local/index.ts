export { createLocalRuntime, type LocalRuntimeOptions } from "./local-runtime.js";
export type { LayerSource } from "./sandbox-root.js";
