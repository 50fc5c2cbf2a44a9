/** @sbx/server — the sbx server: Connect/gRPC handlers, SQLite state, the local runtime. */

export type {
  RuntimeExit,
  RuntimeProcess,
  RuntimeProcessSpec,
  RuntimeSandbox,
  RuntimeSandboxSpec,
  SandboxRuntime,
  TunnelScheme,
} from "@sbx/server-kit";
export { tunnelDomainProblem } from "@sbx/server-kit";
export { MEMORY_TAIL_BYTES } from "./file-output-log.js";
export { jsonLogger, type Logger, silentLogger } from "./logger.js";
export { createLocalRuntime, type LocalRuntimeOptions, type SandboxNetworkOptions } from "./runtime/local/index.js";
export { DEFAULT_SERVER_NICE, niceProblem } from "./scheduling-priority.js";
export {
  insecureRegistryProblem,
  PrerequisiteError,
  parseListen,
  type RunningServer,
  type ServerOptions,
  startServer,
} from "./server.js";
