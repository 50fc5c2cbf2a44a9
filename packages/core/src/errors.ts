/**
 * The public error family. Every error the client throws is a `SandboxError` with a stable
 * `code`. Each class also carries `_tag` (its class name), so the same objects are Effect
 * tagged errors: `Effect.catchTag("NotFoundError", …)` works on the Effect API.
 *
 * `instanceof` must hold across duplicated copies of this package (two versions in one
 * node_modules tree), so it is decided by a registry-wide symbol and the tags an instance
 * carries, not by prototype identity.
 */
const TAGS: unique symbol = Symbol.for("@sbx/core/SandboxError.tags") as never;

/**
 * Every `code` a `SandboxError` can carry. A union, so that `switch (error.code)` is checked:
 * a misspelt case does not compile, and a `default` branch can assert it saw them all.
 */
export type SandboxErrorCode =
  | "unknown"
  | "invalid"
  | "not_found"
  | "already_exists"
  | "timeout"
  | "sandbox_timeout"
  | "sandbox_idle_timeout"
  | "sandbox_terminated"
  | "client_closed"
  | "connection"
  | "authentication"
  | "command_timeout"
  | "quota_exceeded"
  | "tunnel"
  | "aborted"
  | "failed_precondition"
  | "unsupported"
  | "internal"
  | "filesystem"
  | "filesystem_not_found"
  | "filesystem_is_a_directory"
  | "filesystem_not_a_directory"
  | "filesystem_directory_not_empty"
  | "filesystem_path_already_exists"
  | "filesystem_permission"
  | "output_dropped"
  | "output_lost";

export interface SandboxErrorOptions {
  readonly cause?: unknown;
  /** The RPC status name (e.g. "not_found") when the error came from the server. */
  readonly rpcStatus?: string;
}

export class SandboxError extends Error {
  static readonly tag: string = "SandboxError";
  readonly code: SandboxErrorCode = "unknown";
  readonly _tag: string;
  readonly rpcStatus: string | undefined;
  declare readonly [TAGS]: readonly string[];

  constructor(message: string, options: SandboxErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const tags: string[] = [];
    for (let c = new.target as unknown as { tag?: string } | null; c && typeof c.tag === "string"; ) {
      if (!tags.includes(c.tag)) tags.push(c.tag);
      c = Object.getPrototypeOf(c);
    }
    Object.defineProperty(this, TAGS, { value: Object.freeze(tags), enumerable: false });
    this._tag = tags[0] ?? "SandboxError";
    this.name = this._tag;
    this.rpcStatus = options.rpcStatus;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== "object" || value === null) return false;
    const tags = (value as { [TAGS]?: unknown })[TAGS];
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class instanceof was asked about (a subclass too)
    return Array.isArray(tags) && tags.includes(this.tag);
  }
}

function define<C extends SandboxErrorCode>(tag: string, code: C, parent: typeof SandboxError = SandboxError) {
  const cls = class extends parent {
    static override readonly tag = tag;
    override readonly code: C = code;
  };
  Object.defineProperty(cls, "name", { value: tag });
  return cls;
}

/** Bad input, rejected before anything changed (client-side or by the server). */
export class InvalidError extends define("InvalidError", "invalid") {}
export class NotFoundError extends define("NotFoundError", "not_found") {}
export class AlreadyExistsError extends define("AlreadyExistsError", "already_exists") {}
/** The operation did not finish within its deadline (`timeoutMs` or a wait's timeout). */
export class TimeoutError extends define("TimeoutError", "timeout") {}
/** The sandbox ran past its `timeoutMs` (its return code is 124). */
export class SandboxTimeoutError extends define("SandboxTimeoutError", "sandbox_timeout") {}
/**
 * The sandbox was idle for its `idleTimeoutMs` and was stopped (its return code is 124, as for
 * a timeout). Also an instance of `SandboxTimeoutError`.
 */
export class SandboxIdleTimeoutError extends define(
  "SandboxIdleTimeoutError",
  "sandbox_idle_timeout",
  SandboxTimeoutError,
) {}
/** The sandbox was terminated (its return code is 137). */
export class SandboxTerminatedError extends define("SandboxTerminatedError", "sandbox_terminated") {}
/** The client (or the sandbox object, after `detach()`) was closed. */
export class ClientClosedError extends define("ClientClosedError", "client_closed") {}
/** What a registry's refusal (an image pull) says beside the message. */
export interface RegistryErrorOptions extends SandboxErrorOptions {
  /** The image registry involved ("docker.io", "127.0.0.1:5000"). */
  readonly registry?: string | undefined;
}

/**
 * The server could not be reached, after retries. With `registry` set: the sbx server was
 * reached, but the image registry it pulls from was not (pulling again resumes).
 */
export class ConnectionError extends define("ConnectionError", "connection") {
  /** Set when an image registry, not the sbx server, could not be reached: its host. */
  readonly registry: string | undefined;

  constructor(message: string, options: RegistryErrorOptions = {}) {
    super(message, options);
    this.registry = options.registry;
  }
}
/**
 * The token is missing, wrong, or lacks permission. With `registry` set: the sbx token was
 * fine, and an image registry refused the credentials given for a pull (or wanted some).
 */
export class AuthenticationError extends define("AuthenticationError", "authentication") {
  /** Set when an image registry, not the sbx server, refused: its host. */
  readonly registry: string | undefined;

  constructor(message: string, options: RegistryErrorOptions = {}) {
    super(message, options);
    this.registry = options.registry;
  }
}
export class CommandTimeoutError extends define("CommandTimeoutError", "command_timeout") {}
export class QuotaExceededError extends define("QuotaExceededError", "quota_exceeded") {}
export interface TunnelErrorOptions extends SandboxErrorOptions {
  /** The port inside the sandbox. */
  readonly port?: number | undefined;
}
/**
 * A connection to a port inside the sandbox failed (`sb.connect`, `sb.tunnel`): nothing
 * listens there, or the port's connection broke. `port` names the port.
 */
export class TunnelError extends define("TunnelError", "tunnel") {
  /** The port inside the sandbox, when the error is about one. */
  readonly port: number | undefined;

  constructor(message: string, options: TunnelErrorOptions = {}) {
    super(message, options);
    this.port = options.port;
  }
}
/** The call was cancelled through its `AbortSignal`. `name` is "AbortError", like `fetch`'s. */
export class AbortedError extends define("AbortedError", "aborted") {
  constructor(message = "The operation was aborted", options: SandboxErrorOptions = {}) {
    super(message, options);
    this.name = "AbortError";
  }
}
/** The request was valid but the target is in the wrong state for it. */
export class FailedPreconditionError extends define("FailedPreconditionError", "failed_precondition") {}
/**
 * The server does not support this feature (yet): e.g. `ports`, `cidrAllowlist` or a
 * `readinessProbe` on a server without them. Nothing was changed.
 */
export class UnsupportedError extends define("UnsupportedError", "unsupported") {}
/** The server failed unexpectedly. */
export class InternalError extends define("InternalError", "internal") {}

/**
 * Output asked for from an offset the server no longer keeps: it retains a bounded amount of
 * each process stream and drops the oldest bytes. Reading from `firstKeptOffset` works.
 */
export class OutputDroppedError extends define("OutputDroppedError", "output_dropped") {
  /** Where the output the server still keeps starts. */
  readonly firstKeptOffset: number;

  constructor(message: string, firstKeptOffset: number, options: SandboxErrorOptions = {}) {
    super(message, options);
    this.firstKeptOffset = firstKeptOffset;
  }
}
/** The server could not store a process's output (its disk was full): the rest of that stream is lost. */
export class OutputLostError extends define("OutputLostError", "output_lost") {}

export class SandboxFilesystemError extends define("SandboxFilesystemError", "filesystem") {}
export class SandboxFilesystemNotFoundError extends define(
  "SandboxFilesystemNotFoundError",
  "filesystem_not_found",
  SandboxFilesystemError,
) {}
export class SandboxFilesystemIsADirectoryError extends define(
  "SandboxFilesystemIsADirectoryError",
  "filesystem_is_a_directory",
  SandboxFilesystemError,
) {}
export class SandboxFilesystemNotADirectoryError extends define(
  "SandboxFilesystemNotADirectoryError",
  "filesystem_not_a_directory",
  SandboxFilesystemError,
) {}
export class SandboxFilesystemDirectoryNotEmptyError extends define(
  "SandboxFilesystemDirectoryNotEmptyError",
  "filesystem_directory_not_empty",
  SandboxFilesystemError,
) {}
export class SandboxFilesystemPathAlreadyExistsError extends define(
  "SandboxFilesystemPathAlreadyExistsError",
  "filesystem_path_already_exists",
  SandboxFilesystemError,
) {}
export class SandboxFilesystemPermissionError extends define(
  "SandboxFilesystemPermissionError",
  "filesystem_permission",
  SandboxFilesystemError,
) {}

/** True when `value` is any sbx error (same as `value instanceof SandboxError`). */
export const isSandboxError = (value: unknown): value is SandboxError => value instanceof SandboxError;
