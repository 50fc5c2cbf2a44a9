/**
 * A TCP connection to a port inside a sandbox as web byte streams (`PortConnection`, what
 * `sb.connect` answers), and `PortDialer`: how a transport that reaches a server without a
 * network (the in-process fake) opens one, attached with `withPortDialer`. Over the network,
 * connections go through a port session instead (port-session.ts). Browser-safe.
 */
import type { MuxCode } from "@sbx/proto";
import {
  AuthenticationError,
  FailedPreconditionError,
  InternalError,
  InvalidError,
  NotFoundError,
  type SandboxError,
  TunnelError,
  UnsupportedError,
} from "./errors.js";
import { attachedFunction, attachTo } from "./transport-attachment.js";

/** A TCP connection to a port inside a sandbox, as web byte streams. */
export interface PortConnection {
  /**
   * What the port's app sends. It ends when the app ends its side (or closes); it errors with
   * a `SandboxError` when the connection drops. Cancelling it closes the connection.
   */
  readonly readable: ReadableStream<Uint8Array>;
  /**
   * What the app receives. `close()` ends this side once every byte is sent (a half-close: the
   * readable goes on until the app ends too); `abort()` closes the whole connection.
   */
  readonly writable: WritableStream<Uint8Array>;
}

/** Opens a connection to `port` of `sandboxId`; rejects with a `SandboxError`. */
export type PortDialer = (sandboxId: string, port: number, signal?: AbortSignal) => Promise<PortConnection>;

/** Where `withPortDialer` leaves a transport's dialer. */
export const PORT_DIALER = Symbol.for("@sbx/core/portDialer");

/**
 * `transport`, carrying the dialer its clients' `sb.connect` / `sb.tunnel` use instead of a
 * WebSocket to the endpoint (the in-process fake's transport reaches its ports this way).
 */
export function withPortDialer<T extends object>(transport: T, dial: PortDialer): T {
  return attachTo(transport, PORT_DIALER, dial);
}

/** The dialer `withPortDialer` attached to `transport`, if it did. */
export function attachedPortDialer(transport: unknown): PortDialer | undefined {
  return attachedFunction<PortDialer>(transport, PORT_DIALER);
}

/**
 * The error a connection (to `port`, when it is about one) raises when the server refuses or
 * ends it, by the code it gave (`@sbx/proto`'s MUX_CODES).
 */
export function portConnectError(code: MuxCode, message: string, port?: number): SandboxError {
  switch (code) {
    case "invalid":
      return new InvalidError(message);
    case "unauthenticated":
      return new AuthenticationError(message);
    case "notFound":
      return new NotFoundError(message);
    case "notRunning":
      return new FailedPreconditionError(message);
    case "unsupported":
      return new UnsupportedError(message);
    case "internal":
      return new InternalError(message);
    case "refused":
    case "closed":
    case "protocol":
    case "limit":
    case "unavailable":
      return new TunnelError(message, port === undefined ? {} : { port });
  }
}
