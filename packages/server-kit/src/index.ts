/**
 * @sbx/server-kit — the engine the sbx server and the fake in @sbx/testing share. This entry is
 * browser-safe; the Node listener is at "@sbx/server-kit/listen".
 */

export { CommandLifecycle, type CommandLifecycleOptions, DISCONNECT_GRACE_MS } from "./command-lifecycle.js";
export * from "./engine/index.js";
export { MAX_PENDING_WATCH_EVENTS, WatchQueue } from "./engine/watch-queue.js";
export { type FsErrorKind, filesystemError } from "./filesystem-errors.js";
export {
  MAX_TUNNEL_DOMAIN_LENGTH,
  TunnelDomain,
  type TunnelDomainOptions,
  type TunnelDomainSettings,
  type TunnelHostKind,
  type TunnelHostMatch,
  type TunnelScheme,
  tunnelDomainOf,
  tunnelDomainProblem,
} from "./ingress/tunnel-domain.js";
export { Notifier } from "./notifier.js";
export { outputDropped, outputLost } from "./output-errors.js";
export { type OutputEnd, type OutputLogLike, serveOutput } from "./output-reads.js";
export {
  READ_MAX_BYTES,
  readMaxBytesOf,
  serveWithLimits,
  WRITE_FILE_READ_MAX_BYTES,
} from "./request-limits.js";
export { BodyCut, type Chunk, type ChunkResult, UPLOAD_IDLE_MS, Uploads, type UploadTarget } from "./uploads.js";
export {
  checkArgv,
  checkEnv,
  checkId,
  checkLifecycle,
  checkName,
  checkNetworkPolicy,
  checkPath,
  checkProbe,
  checkPtySize,
  checkSandboxSpec,
  checkTags,
  checkWorkdir,
  invalid,
  MAX_DISK_MIB,
  MIN_DISK_MIB,
} from "./validation.js";
