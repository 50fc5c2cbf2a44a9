/** @sbx/server — the sbx server. */
export type {
  RuntimeExit,
  RuntimeProcess,
  RuntimeProcessSpec,
  RuntimeSandbox,
  RuntimeSandboxSpec,
  SandboxRuntime,
} from "./runtime/runtime.js";
