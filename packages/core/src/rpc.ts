/**
 * `SbxConnection`, the service every operation of the Effect API needs: how this client
 * reaches an sbx server (typed clients for the sbx.v1 services, the resolved configuration,
 * the auth headers, raw HTTP for bulk bytes), like a database client's connection. And `call`,
 * which runs one unary RPC over it with retries and a deadline. The clients come from the
 * adapter: Connect's over a Connect transport (`@sbx/core/connect`), or @sbx/web's own.
 */
import type { CallOptions, Client } from "@connectrpc/connect";
import type { FilesystemService, ImageService, NetworkService, ProcessService, SandboxService } from "@sbx/proto";
import * as Context from "effect/Context";
import * as Effect from "effect/Effect";
import * as Layer from "effect/Layer";
import * as Stream from "effect/Stream";
import type { ResolvedConfig } from "./config.js";
import { type SandboxError, TimeoutError } from "./errors.js";
import { loadOnFirstUse } from "./load-on-first-use.js";
import type { PortDialer } from "./port-dialer.js";
import { dialerSession, type OpenPortSession, type OpenTunnelChannel } from "./port-session.js";
import type { RawHttpClient } from "./raw-routes.js";
import { isTransient, retryAfterOf, toSandboxError } from "./rpc-errors.js";

/**
 * A client per sbx.v1 service, with the call shape of Connect's `createClient`: requests as
 * plain objects, answers as protobuf-es messages, failures with a Connect code (`RpcFailure`).
 */
export interface RpcClients {
  readonly sandboxes: Client<typeof SandboxService>;
  readonly processes: Client<typeof ProcessService>;
  readonly files: Client<typeof FilesystemService>;
  readonly images: Client<typeof ImageService>;
  readonly network: Client<typeof NetworkService>;
}

export interface SbxConnectionShape extends RpcClients {
  readonly config: ResolvedConfig;
  /** Headers sent with every call (authorization). */
  readonly headers: Record<string, string>;
  /** Raw HTTP for bulk bytes (output, files), when the adapter has it and talks to a real endpoint. */
  readonly rawHttp?: RawHttpClient | undefined;
  /**
   * Opens sessions of TCP connections to a sandbox's ports (`sb.connect`, `sb.tunnel`): over
   * the transport's own dialer (the in-process fake's), else over one connection to the
   * endpoint's tunnel route (the adapter's channel, or a WebSocket).
   */
  readonly openPortSession: OpenPortSession;
}

/** The Effect service: provide it with `layer(transport)` from `@sbx/core/effect` (or an adapter's `/effect`). */
export class SbxConnection extends Context.Service<SbxConnection, SbxConnectionShape>()("@sbx/core/SbxConnection") {}

/** How a connection reaches sandbox ports: a transport's dialer, or a channel to the tunnel route. */
export interface PortAccess {
  /** The in-process fake's dialer (`withPortDialer`); without it, the endpoint's tunnel route. */
  readonly dialer?: PortDialer | undefined;
  /** The adapter's channel to the route (@sbx/node's); default: a WebSocket. */
  readonly channel?: OpenTunnelChannel | undefined;
}

export function makeConnection(
  clients: RpcClients,
  config: ResolvedConfig,
  rawHttp?: RawHttpClient,
  ports: PortAccess = {},
): SbxConnectionShape {
  const { dialer } = ports;
  return {
    rawHttp,
    openPortSession: dialer
      ? async (sandboxId) => dialerSession(dialer, sandboxId)
      : tunnelSessionsOnFirstUse(config, ports.channel),
    sandboxes: clients.sandboxes,
    processes: clients.processes,
    files: clients.files,
    images: clients.images,
    network: clients.network,
    config,
    headers: config.token ? { authorization: `Bearer ${config.token}` } : {},
  };
}

export const connectionLayer = (
  clients: RpcClients,
  config: ResolvedConfig,
  ports?: PortAccess,
): Layer.Layer<SbxConnection> => Layer.succeed(SbxConnection, makeConnection(clients, config, undefined, ports));

/** Sessions over the endpoint's tunnel route (mux-session.ts), their code loaded on first use. */
function tunnelSessionsOnFirstUse(config: ResolvedConfig, channel: OpenTunnelChannel | undefined): OpenPortSession {
  return async (sandboxId, signal) => {
    const [{ openMuxSession }, openChannel] = await Promise.all([
      loadOnFirstUse(() => import("./mux-session.js")),
      channel ?? loadOnFirstUse(() => import("./websocket-channel.js")).then((m) => m.openWebSocketChannel),
    ]);
    return openMuxSession(openChannel, { endpoint: config.endpoint, token: config.token, sandboxId, signal });
  };
}

/**
 * The retry policy for transient failures: the delay before retry number `failures + 1`, or
 * undefined when `error` is permanent or the retries are used up. Exponential from
 * `retryBaseMs`, capped at `retryMaxDelayMs`, jittered (0.8–1.2×), at most `maxRetries`
 * times, and never sooner than the delay the server asked for. (Written out rather than as an
 * Effect `Schedule`: the same policy for a few KiB less in every browser bundle.)
 */
export function retryDelayMs(error: SandboxError, failures: number, config: ResolvedConfig): number | undefined {
  if (!isTransient(error) || failures >= config.maxRetries) return undefined;
  const backoff = Math.min(config.retryBaseMs * 2 ** failures, config.retryMaxDelayMs) * (0.8 + Math.random() * 0.4);
  return Math.max(backoff, retryAfterOf(error) ?? 0);
}

/** `effect`, run again after each transient failure as `retryDelayMs` says. */
export const retrying = <A, R>(
  effect: Effect.Effect<A, SandboxError, R>,
  config: ResolvedConfig,
): Effect.Effect<A, SandboxError, R> => {
  const attempt = (failures: number): Effect.Effect<A, SandboxError, R> =>
    Effect.catch(effect, (error) => {
      const delay = retryDelayMs(error, failures, config);
      return delay === undefined
        ? Effect.fail(error)
        : Effect.flatMap(Effect.sleep(delay), () => attempt(failures + 1));
    });
  return attempt(0);
};

/**
 * `stream`, run again after each transient failure as `retryDelayMs` says; an attempt that
 * delivered something starts the count again (a long download may be cut many times). The
 * stream itself resumes where the last attempt stopped.
 */
export const retryingStream = <A, R>(
  stream: Stream.Stream<A, SandboxError, R>,
  config: ResolvedConfig,
): Stream.Stream<A, SandboxError, R> => {
  const attempt = (failures: number): Stream.Stream<A, SandboxError, R> =>
    Stream.suspend(() => {
      let delivered = false;
      return stream.pipe(
        Stream.tap(() => {
          delivered = true;
          return Effect.void;
        }),
        Stream.catch((error) => {
          const count = delivered ? 0 : failures;
          const delay = retryDelayMs(error, count, config);
          return delay === undefined
            ? Stream.fail(error)
            : Stream.unwrap(Effect.as(Effect.sleep(delay), attempt(count + 1)));
        }),
      );
    });
  return attempt(0);
};

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
    duration: timeoutMs, // milliseconds
    orElse: () => Effect.fail(new TimeoutError(`${what} did not finish within ${timeoutMs} ms`)),
  });

/** The longest delay setTimeout takes (a longer one fires at once). */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Runs one RPC: each attempt gets an AbortSignal (interrupting the effect cancels the request)
 * and the auth headers; transient failures are retried on `retryDelayMs`; the whole thing is
 * bounded by the call's deadline (`TimeoutError`), as `withDeadline(retrying(…))` would, but
 * without its two forked fibers per call: each attempt is one callback that the deadline's own
 * timer ends, and a retry's wait stops at the deadline.
 */
export const call = <A>(
  what: string,
  invoke: (rpc: SbxConnectionShape, options: CallOptions) => Promise<A>,
  settings: CallSettings = {},
): Effect.Effect<A, SandboxError, SbxConnection> =>
  Effect.flatMap(Effect.service(SbxConnection), (rpc) => {
    const deadline = settings.timeoutMs ?? rpc.config.timeoutMs;
    // Each attempt has its own deadline too, so one hung attempt is retried, not waited out.
    const attemptTimeoutMs = settings.attemptTimeoutMs ?? Math.min(deadline, rpc.config.attemptTimeoutMs);
    const endsAt = Date.now() + deadline;
    const timedOut = () => new TimeoutError(`${what} did not finish within ${deadline} ms`);
    const attempt = Effect.callback<A, SandboxError>((resume) => {
      const controller = new AbortController();
      let settled = false;
      const settle = (outcome: Effect.Effect<A, SandboxError>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resume(outcome);
      };
      const left = endsAt - Date.now();
      // (A deadline past setTimeout's range, ~24.8 days, is as good as none.)
      const timer =
        left <= MAX_TIMER_MS
          ? setTimeout(() => {
              controller.abort();
              settle(Effect.fail(timedOut()));
            }, left)
          : undefined;
      try {
        invoke(rpc, { signal: controller.signal, headers: rpc.headers, timeoutMs: attemptTimeoutMs }).then(
          (value) => settle(Effect.succeed(value)),
          (error: unknown) => settle(Effect.fail(toSandboxError(error, what, rpc.config.endpoint))),
        );
      } catch (error) {
        settle(Effect.fail(toSandboxError(error, what, rpc.config.endpoint)));
      }
      // Interrupted (the caller's signal, a closed client): the request is cancelled.
      return Effect.sync(() => {
        settled = true;
        clearTimeout(timer);
        controller.abort();
      });
    });
    const attempts = (failures: number): Effect.Effect<A, SandboxError> =>
      Effect.catch(attempt, (error) => {
        const delay = retryDelayMs(error, failures, rpc.config);
        if (delay === undefined) return Effect.fail(error);
        const left = endsAt - Date.now();
        if (delay >= left) return Effect.flatMap(Effect.sleep(Math.max(left, 0)), () => Effect.fail(timedOut()));
        return Effect.flatMap(Effect.sleep(delay), () => attempts(failures + 1));
      });
    return attempts(0);
  });
