/**
 * The RPC service: typed Connect clients for the sbx.v1 services plus the client's
 * configuration, and `call`, which runs one unary RPC with retries and a deadline.
 */
import { type CallOptions, type Client, createClient, type Transport } from "@connectrpc/connect";
import { FilesystemService, ProcessService, SandboxService } from "@sbx/proto";
import * as Context from "effect/Context";
import * as Duration from "effect/Duration";
import * as Effect from "effect/Effect";
import * as Layer from "effect/Layer";
import * as Schedule from "effect/Schedule";
import type { ResolvedConfig } from "./config.js";
import { type SandboxError, TimeoutError } from "./errors.js";
import type { RawHttpClient } from "./raw-http.js";
import { isTransient, retryAfterOf, toSandboxError } from "./rpc-errors.js";

export interface SbxRpcShape {
  readonly sandboxes: Client<typeof SandboxService>;
  readonly processes: Client<typeof ProcessService>;
  readonly files: Client<typeof FilesystemService>;
  readonly config: ResolvedConfig;
  /** Headers sent with every call (authorization). */
  readonly headers: Record<string, string>;
  /** Raw HTTP for bulk bytes (output, files), when the adapter has it and talks to a real endpoint. */
  readonly rawHttp?: RawHttpClient | undefined;
}

export class SbxRpc extends Context.Service<SbxRpc, SbxRpcShape>()("@sbx/core/SbxRpc") {}

export function makeRpc(transport: Transport, config: ResolvedConfig, rawHttp?: RawHttpClient): SbxRpcShape {
  return {
    rawHttp,
    sandboxes: createClient(SandboxService, transport),
    processes: createClient(ProcessService, transport),
    files: createClient(FilesystemService, transport),
    config,
    headers: config.token ? { authorization: `Bearer ${config.token}` } : {},
  };
}

export const rpcLayer = (transport: Transport, config: ResolvedConfig): Layer.Layer<SbxRpc> =>
  Layer.succeed(SbxRpc, makeRpc(transport, config));

/**
 * The retry policy for transient failures: exponential from `retryBaseMs`, jittered, capped
 * at `retryMaxDelayMs`, at most `maxRetries` times, and never sooner than the delay the
 * server asked for. The overall deadline is applied around the retried effect.
 */
export const retrySchedule = (config: ResolvedConfig) =>
  Schedule.exponential(Duration.millis(config.retryBaseMs), 2).pipe(
    Schedule.modifyDelay(({ duration }) =>
      Effect.succeed(Duration.min(duration, Duration.millis(config.retryMaxDelayMs))),
    ),
    Schedule.jittered,
    Schedule.modifyDelay(({ input, duration }) => {
      // A permanent error ends the retries at once, with that error.
      if (!isTransient(input)) return Effect.fail(input as SandboxError);
      const asked = retryAfterOf(input);
      return Effect.succeed(asked === undefined ? duration : Duration.max(duration, Duration.millis(asked)));
    }),
    (s) => Schedule.max([s, Schedule.recurs(config.maxRetries)]),
  );

export interface CallSettings {
  /** Deadline for the whole call including retries; defaults to the client's `timeoutMs`. */
  readonly timeoutMs?: number | undefined;
  /** Longest a single attempt may take (long polls set this a little above the poll). */
  readonly attemptTimeoutMs?: number | undefined;
}

/** Fails with `TimeoutError` when `effect` has not finished within `timeoutMs`. */
export const withDeadline = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  timeoutMs: number,
  what: string,
): Effect.Effect<A, E | TimeoutError, R> =>
  Effect.timeoutOrElse(effect, {
    duration: Duration.millis(timeoutMs),
    orElse: () => Effect.fail(new TimeoutError(`${what} did not finish within ${timeoutMs} ms`)),
  });

/**
 * Runs one RPC: each attempt gets an AbortSignal tied to the fiber (so interrupting the
 * effect cancels the request) and the auth headers; transient failures are retried on
 * `retrySchedule`; the whole thing is bounded by the call's deadline.
 */
export const call = <A>(
  what: string,
  invoke: (rpc: SbxRpcShape, options: CallOptions) => Promise<A>,
  settings: CallSettings = {},
): Effect.Effect<A, SandboxError, SbxRpc> =>
  Effect.gen(function* () {
    const rpc = yield* SbxRpc;
    const deadline = settings.timeoutMs ?? rpc.config.timeoutMs;
    // Each attempt has its own deadline too, so one hung attempt is retried, not waited out.
    const attemptTimeoutMs = settings.attemptTimeoutMs ?? Math.min(deadline, rpc.config.attemptTimeoutMs);
    const attempt = Effect.tryPromise({
      try: (signal) => invoke(rpc, { signal, headers: rpc.headers, timeoutMs: attemptTimeoutMs }),
      catch: (error) => toSandboxError(error, what),
    });
    const retried = Effect.retry(attempt, retrySchedule(rpc.config));
    return yield* withDeadline(retried, deadline, what);
  });
