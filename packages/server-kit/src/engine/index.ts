/** The engine and its seams (runtime driver, store, output storage). */

export {
  DEFAULT_IMAGE,
  DEFAULT_IMAGE_ENV,
  IMAGE_DEFAULT_PATH,
  imageEnv,
  isRootUser,
  PTY_ENV,
  processEnv,
} from "./default-image.js";
export { DEFERRED_WRITE_MS, Engine, type EngineOptions, type EngineSeams, newSandboxId } from "./engine.js";
export { EngineImages } from "./engine-images.js";
export { type EngineLogger, silentLogger } from "./engine-logger.js";
export { EngineProcess, type ProcessHost } from "./engine-process.js";
export { ENTRYPOINT, EngineSandbox, type SandboxHost } from "./engine-sandbox.js";
export { exited, fromRuntimeExit, idleTimedOut, signaled, terminated, timedOut } from "./exit-status.js";
export { type ImageFailureSubject, imageFailure, imageStoreFailure } from "./image-errors.js";
export * from "./image-store.js";
export type { IngressToken, IngressTokenRequest, IngressTunnel, SandboxIngress } from "./ingress.js";
export {
  DEFAULT_OUTPUT_RETENTION_BYTES,
  type LogChunk,
  MemoryOutputLog,
  memoryOutputStorage,
} from "./memory-output-log.js";
export { networkSpecOf } from "./network-spec.js";
export type {
  OutputLogOptions,
  OutputStorage,
  OutputStreamName,
  ProcessOutputLog,
} from "./output-storage.js";
export { type PortConnectProblem, portConnectProblem } from "./port-connect-check.js";
export { PROBE_TRY_TIMEOUT_MS } from "./readiness.js";
export { engineRoutes } from "./routes.js";
export * from "./runtime-driver.js";
export { fsCall, startUpload } from "./services/filesystem-calls.js";
export { processOf, sandboxOf } from "./services/lookup.js";
export { memoryStateStore, type StateStore, type StoredSandbox } from "./state-store.js";
export { type Timer, unrefTimer } from "./timers.js";
export { tunnelHostOpen } from "./tunnel-host-check.js";
