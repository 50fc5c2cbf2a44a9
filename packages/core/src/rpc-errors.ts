/**
 * One place that decides what a failed RPC means: which public error it becomes and whether
 * it is transient (worth retrying with the same idempotency key).
 */
import type { FilesystemError, ImageError, OutputDropped, RetryInfo } from "@sbx/proto";
import { FilesystemErrorKind, ImageErrorKind } from "@sbx/proto/wire";
import {
  AbortedError,
  AlreadyExistsError,
  AuthenticationError,
  ConnectionError,
  FailedPreconditionError,
  InternalError,
  InvalidError,
  NotFoundError,
  OutputDroppedError,
  OutputLostError,
  QuotaExceededError,
  SandboxError,
  SandboxFilesystemDirectoryNotEmptyError,
  SandboxFilesystemError,
  SandboxFilesystemIsADirectoryError,
  SandboxFilesystemNotADirectoryError,
  SandboxFilesystemNotFoundError,
  SandboxFilesystemPathAlreadyExistsError,
  SandboxFilesystemPermissionError,
  TimeoutError,
  UnsupportedError,
} from "./errors.js";
import { notAnSbxServerReason } from "./foreign-server.js";
import { Code, codeName, detailOf, type RpcFailureLike, rpcFailureOf } from "./rpc-failure.js";

/** Marks an error as worth another attempt; carried on the public error as `transient`. */
const TRANSIENT = Symbol.for("@sbx/core/transient");
const RETRY_AFTER = Symbol.for("@sbx/core/retryAfterMs");

const TRANSIENT_CODES = new Set<Code>([Code.Unavailable, Code.Aborted, Code.DeadlineExceeded]);

/**
 * Converts anything thrown by a transport or handler into a `SandboxError`; `endpoint` (the
 * server called) names the culprit when it turns out not to be an sbx server.
 */
export function toSandboxError(error: unknown, what: string, endpoint?: string): SandboxError {
  if (error instanceof SandboxError) return error;
  const ce = rpcFailureOf(error);
  const rpcStatus = codeName(ce.code);
  const options = { cause: error, rpcStatus };
  // Not worth retrying: the endpoint is wrong, and will stay wrong.
  const notSbx = notAnSbxServerReason(ce);
  if (notSbx) {
    const where = endpoint ? ` at ${endpoint}` : "";
    return new ConnectionError(`${what}: this is not an sbx server${where} (${notSbx})`, options);
  }
  const message = `${what}: ${ce.rawMessage || rpcStatus}`;
  const filesystem = filesystemErrorOf(ce, message, options);
  if (filesystem) return filesystem;
  const image = imageErrorOf(ce, message, options);
  if (image) return image;
  const dropped = detailOf<OutputDropped>(ce, "sbx.v1.OutputDropped");
  if (dropped) return new OutputDroppedError(message, Number(dropped.firstKeptOffset), options);
  let result: SandboxError;
  switch (ce.code) {
    case Code.DataLoss:
      result = new OutputLostError(message, options);
      break;
    case Code.InvalidArgument:
    case Code.OutOfRange:
      result = new InvalidError(message, options);
      break;
    case Code.NotFound:
      result = new NotFoundError(message, options);
      break;
    case Code.AlreadyExists:
      result = new AlreadyExistsError(message, options);
      break;
    case Code.DeadlineExceeded:
      result = new TimeoutError(message, options);
      break;
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      result = new AuthenticationError(message, options);
      break;
    case Code.ResourceExhausted:
      result = new QuotaExceededError(message, options);
      break;
    case Code.FailedPrecondition:
      result = new FailedPreconditionError(message, options);
      break;
    case Code.Unimplemented:
      result = new UnsupportedError(message, options);
      break;
    case Code.Unavailable:
    case Code.Aborted:
      result = new ConnectionError(message, options);
      break;
    case Code.Canceled:
      // The caller's own aborts are handled before we get here: a cancelled stream is the
      // connection's doing (an HTTP/2 RST_STREAM CANCEL when the connection drops).
      result = isTransportFailure(ce) ? new ConnectionError(message, options) : new AbortedError(message, options);
      break;
    default:
      // A connection that failed before any status (a refused socket, a browser's "Failed to
      // fetch") arrives as unknown / internal in some runtimes: it is still a ConnectionError.
      result = isTransportFailure(ce) ? new ConnectionError(message, options) : new InternalError(message, options);
  }
  const retryAfterMs = retryDelayOf(ce);
  // A quota error is only worth retrying when the server says when to come back.
  const quotaWithDelay = ce.code === Code.ResourceExhausted && retryAfterMs !== undefined;
  if (TRANSIENT_CODES.has(ce.code) || quotaWithDelay || isTransportFailure(ce)) markTransient(result, retryAfterMs);
  return result;
}

/**
 * Connect reports a dropped connection, a reset HTTP/2 stream or a refused socket as
 * `unknown`, `internal` or `canceled` depending on the runtime; those are transient too,
 * unless the caller aborted (handled before we get here).
 */
function isTransportFailure(ce: RpcFailureLike): boolean {
  if (ce.code !== Code.Unknown && ce.code !== Code.Internal && ce.code !== Code.Canceled) return false;
  const text = `${ce.rawMessage} ${String((ce.cause as Error | undefined)?.message ?? "")}`;
  // "Failed to fetch": Chromium; "NetworkError when attempting to fetch": Firefox; "Load
  // failed": Safari; "fetch failed": undici.
  return /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|socket hang up|stream closed|premature close|terminated|NGHTTP2|ERR_HTTP2|network|fetch failed|Failed to fetch|Load failed|GOAWAY|other side closed|closed/i.test(
    text,
  );
}

const FILESYSTEM_ERRORS = {
  [FilesystemErrorKind.NOT_FOUND]: SandboxFilesystemNotFoundError,
  [FilesystemErrorKind.IS_A_DIRECTORY]: SandboxFilesystemIsADirectoryError,
  [FilesystemErrorKind.NOT_A_DIRECTORY]: SandboxFilesystemNotADirectoryError,
  [FilesystemErrorKind.DIRECTORY_NOT_EMPTY]: SandboxFilesystemDirectoryNotEmptyError,
  [FilesystemErrorKind.ALREADY_EXISTS]: SandboxFilesystemPathAlreadyExistsError,
  [FilesystemErrorKind.PERMISSION_DENIED]: SandboxFilesystemPermissionError,
} as const;

/** A failed filesystem call (it carries a FilesystemError detail) as its typed error; never transient. */
function filesystemErrorOf(
  ce: RpcFailureLike,
  message: string,
  options: { cause: unknown; rpcStatus: string },
): SandboxError | undefined {
  const detail = detailOf<FilesystemError>(ce, "sbx.v1.FilesystemError");
  if (!detail) return undefined;
  if (detail.kind === FilesystemErrorKind.NO_SPACE) {
    return new SandboxFilesystemError(`${message} (the sandbox's disk or quota is full)`, options);
  }
  const ErrorClass = FILESYSTEM_ERRORS[detail.kind as keyof typeof FILESYSTEM_ERRORS] ?? SandboxFilesystemError;
  return new ErrorClass(message, options);
}

/**
 * A failed image call (it carries an ImageError detail) as its typed error; never transient (a
 * registry that cannot be reached is the server's to retry, and a pull called again resumes).
 * A registry's refusal keeps the registry on the error, so it is never taken for the sbx token.
 */
function imageErrorOf(
  ce: RpcFailureLike,
  message: string,
  options: { cause: unknown; rpcStatus: string },
): SandboxError | undefined {
  const detail = detailOf<ImageError>(ce, "sbx.v1.ImageError");
  const ErrorClass = detail && IMAGE_ERRORS[detail.kind as keyof typeof IMAGE_ERRORS];
  // A kind this client does not know: the status code decides.
  return ErrorClass && new ErrorClass(message, { ...options, registry: detail.registry || undefined });
}

/** By ImageErrorKind (`registry` is kept by the two errors that have it). */
const IMAGE_ERRORS = {
  [ImageErrorKind.NOT_FOUND]: NotFoundError,
  [ImageErrorKind.AUTHENTICATION]: AuthenticationError,
  [ImageErrorKind.CONNECTION]: ConnectionError,
  [ImageErrorKind.DIGEST_MISMATCH]: SandboxError,
  [ImageErrorKind.INVALID]: InvalidError,
  [ImageErrorKind.UNSUPPORTED]: UnsupportedError,
  [ImageErrorKind.QUOTA]: QuotaExceededError,
  [ImageErrorKind.IN_USE]: FailedPreconditionError,
  [ImageErrorKind.TIMEOUT]: TimeoutError,
} as const;

function retryDelayOf(ce: RpcFailureLike): number | undefined {
  const info = detailOf<RetryInfo>(ce, "sbx.v1.RetryInfo");
  return info ? Number(info.retryDelayMs) : undefined;
}

export function markTransient<E extends SandboxError>(error: E, retryAfterMs?: number): E {
  Object.defineProperty(error, TRANSIENT, { value: true, enumerable: false });
  if (retryAfterMs !== undefined) Object.defineProperty(error, RETRY_AFTER, { value: retryAfterMs, enumerable: false });
  return error;
}

export const isTransient = (error: unknown): boolean =>
  typeof error === "object" && error !== null && (error as { [TRANSIENT]?: boolean })[TRANSIENT] === true;

/** The server-requested delay before the next attempt, if it sent one. */
export const retryAfterOf = (error: unknown): number | undefined =>
  typeof error === "object" && error !== null ? (error as { [RETRY_AFTER]?: number })[RETRY_AFTER] : undefined;
