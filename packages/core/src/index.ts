/**
 * @sbx/core — the transport-agnostic sbx client (Promise API). Runtime packages
 * (@sbx/node, @sbx/web, @sbx/deno, @sbx/bun) re-export all of this with a transport; the
 * Effect API is at "@sbx/core/effect".
 */
export { type CallOptions, type ClientDefaults, SandboxClient, Sandboxes } from "./client.js";
export {
  CommandHandle,
  DEFAULT_COMMAND_IDLE_TIMEOUT_MS,
  DEFAULT_COMMAND_TTL_MS,
  DEFAULT_RUN_TIMEOUT_MS,
  type ExecutionResult,
  type HandleCallOptions,
  type OutputChunk,
  type ReconnectOptions,
  type RunOptions,
} from "./command-handle.js";
export { DEFAULT_ENDPOINT, type SandboxClientOptions } from "./config.js";
export {
  ContainerProcess,
  type ProcessStreams,
  type SignalOptions,
  type WaitOptions,
} from "./container-process.js";
export * from "./errors.js";
export {
  type OpenBinaryMode,
  type OpenMode,
  type OpenTextMode,
  SandboxFile,
  type SeekWhence,
} from "./file-handle.js";
export {
  type FileCallOptions,
  type FileInfo,
  type FilesystemFactory,
  FileWatch,
  type FileWatchEvent,
  type FileWatchEventType,
  type LocalFiles,
  LocalSandboxFilesystem,
  localFilesystems,
  SandboxFilesystem,
  type WatchOptions,
} from "./filesystem.js";
export { skipBytes } from "./filesystem-ops.js";
export { Probe } from "./probe.js";
export { type ExecOptions, type PtySizeOptions, SIGNALS, type SignalName } from "./process-ops.js";
export {
  endpointBase,
  fetchRawHttp,
  parseJson,
  RAW_HEADER,
  type RawAnswer,
  type RawHttpClient,
  type RawRequest,
  type RawRoute,
  RawRouteMemo,
  rawFilePath,
  rawOutputPath,
} from "./raw-http.js";
export { returncodeOf, TERMINATED_RETURNCODE, TIMEOUT_RETURNCODE } from "./returncode.js";
export type { RpcClients } from "./rpc.js";
export { Code as RpcCode, RpcFailure, type RpcFailureDetail, rpcFailureFromJson } from "./rpc-failure.js";
export { type LocalSandbox, Sandbox, type SandboxWaitOptions, type TerminateOptions } from "./sandbox.js";
export { type CreateSandboxOptions, DEFAULT_APP, type ListSandboxesOptions } from "./sandbox-ops.js";
export { StreamWriter, type WriteOptions } from "./stdin-writer.js";
export { concat, type ReadOptions, type StreamMode, StreamReader } from "./stream-reader.js";
export { ARG_MAX_BYTES } from "./validation.js";
