/**
 * @sbx/core — the transport-agnostic sbx client: its Promise API, and only that. Runtime
 * packages (@sbx/node, @sbx/web, @sbx/deno, @sbx/bun) re-export all of this with a transport;
 * the Effect API is at "@sbx/core/effect", and what runtime packages build a client from at
 * "@sbx/core/adapter".
 */
export { type CallOptions, SandboxClient, Sandboxes } from "./client.js";
export type { HandleCallOptions, ReconnectOptions, RunOptions } from "./command-handle.js";
export {
  type CommandOptions,
  DEFAULT_COMMAND_IDLE_TIMEOUT_MS,
  DEFAULT_COMMAND_TTL_MS,
  DEFAULT_RUN_TIMEOUT_MS,
  type ExecutionResult,
  type OutputChunk,
} from "./command-ops.js";
export { DEFAULT_ENDPOINT, type SandboxClientOptions } from "./config.js";
export {
  ContainerProcess,
  type ProcessStreams,
  type SignalOptions,
  type WaitOptions,
} from "./container-process.js";
export * from "./errors.js";
export type { OpenBinaryMode, OpenMode, OpenTextMode, SeekWhence } from "./file-handle.js";
export {
  type FileCallOptions,
  type FileInfo,
  FileWatch,
  type FileWatchEvent,
  type FileWatchEventType,
  LocalSandboxFilesystem,
  SandboxFilesystem,
  type WatchOptions,
} from "./filesystem.js";
export {
  type Image,
  type ImageArchive,
  type ImageConfig,
  type ImageLike,
  Images,
  type ImportImageOptions,
  LocalImages,
  type PullImageOptions,
  type PullProgress,
} from "./images.js";
// Types, and values for `instanceof`, without the classes' code (loaded on first use).
export { CommandHandle, SandboxFile } from "./lazy-classes.js";
export type { LocalTunnel } from "./local-tunnel.js";
export type { ConnectCredentials, ConnectTokenOptions, Tunnel } from "./network-ops.js";
export type { PortConnection } from "./port-dialer.js";
export { Probe } from "./probe.js";
export { type ExecOptions, type PtySizeOptions, SIGNALS, type SignalName } from "./process-ops.js";
export { TERMINATED_RETURNCODE, TIMEOUT_RETURNCODE } from "./returncode.js";
export {
  type LocalSandbox,
  Sandbox,
  type SandboxWaitOptions,
  type TerminateOptions,
  type TunnelOptions,
} from "./sandbox.js";
export {
  type CreateSandboxOptions,
  DEFAULT_APP,
  type ListSandboxesOptions,
  type UpdateSandboxOptions,
} from "./sandbox-ops.js";
export { type ServiceOptions, ServiceUrl } from "./service-url.js";
export { StreamWriter, type WriteOptions } from "./stdin-writer.js";
export { type ReadOptions, type StreamMode, StreamReader } from "./stream-reader.js";
export { ARG_MAX_BYTES } from "./validation.js";
