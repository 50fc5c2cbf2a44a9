import type { Transport } from "@connectrpc/connect";
import { InvalidError } from "./errors.js";
import { validateDuration } from "./validation.js";

export const DEFAULT_ENDPOINT = "http://127.0.0.1:7420";

export interface SandboxClientOptions {
  /** Server URL. Adapters default it from `SBX_ENDPOINT`, then `http://127.0.0.1:7420`. */
  readonly endpoint?: string;
  /** Bearer token. Adapters default it from `SBX_TOKEN`. */
  readonly token?: string;
  /** Deadline for one whole operation (all its retries), unless the call sets its own. Default 60 s. */
  readonly timeoutMs?: number;
  /** How many times a transient failure is retried. Default 8. */
  readonly maxRetries?: number;
  /**
   * A Connect transport to use instead of the adapter's own, e.g. `fake.transport` from
   * `@sbx/testing` (in-process, no network).
   */
  readonly transport?: Transport;
}

export interface ResolvedConfig {
  readonly endpoint: string;
  readonly token: string | undefined;
  readonly timeoutMs: number;
  readonly maxRetries: number;
  /** Deadline of a single attempt of a unary call (the operation's deadline bounds all attempts). */
  readonly attemptTimeoutMs: number;
  /** Longest time one long-poll asks the server to hold a call. */
  readonly longPollMs: number;
  /** First retry delay and its cap; delays grow exponentially with jitter between them. */
  readonly retryBaseMs: number;
  readonly retryMaxDelayMs: number;
}

export function resolveConfig(options: SandboxClientOptions): ResolvedConfig {
  const endpoint = options.endpoint ?? DEFAULT_ENDPOINT;
  try {
    new URL(endpoint);
  } catch {
    throw new InvalidError(`endpoint ${JSON.stringify(endpoint)} is not a valid URL`);
  }
  const maxRetries = options.maxRetries ?? 8;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) {
    throw new InvalidError(`maxRetries must be a non-negative integer, got ${maxRetries}`);
  }
  if (options.token !== undefined && typeof options.token !== "string") {
    throw new InvalidError("token must be a string");
  }
  return {
    endpoint,
    token: options.token || undefined,
    timeoutMs: options.timeoutMs === undefined ? 60_000 : validateDuration(options.timeoutMs, "timeoutMs"),
    maxRetries,
    attemptTimeoutMs: 20_000,
    longPollMs: 10_000,
    retryBaseMs: 50,
    retryMaxDelayMs: 2_000,
  };
}
