/**
 * Connections to the ports of one sandbox over one connection to the server: a `PortSession`.
 * `sb.tunnel` keeps one open (and reopens it when it drops); `sb.connect` opens one for its
 * single connection. Over the network a session is the tunnel route of `@sbx/proto`'s
 * port-mux.ts (mux-session.ts) on a `TunnelChannel`: a WebSocket by default
 * (websocket-channel.ts, every runtime), or what the adapter brings (@sbx/node, @sbx/deno,
 * @sbx/bun: a plain HTTP/1.1 upgrade, no WebSocket masking). The in-process fake's transport carries a `PortDialer`
 * instead, which `dialerSession` turns into a session that never drops. Browser-safe.
 */
import type { SandboxError } from "./errors.js";
import type { PortConnection, PortDialer } from "./port-dialer.js";
import { attachedFunction, attachTo } from "./transport-attachment.js";

export interface OpenStreamOptions {
  readonly signal?: AbortSignal | undefined;
  /**
   * The caller hands over every chunk it writes and never changes it afterwards (a local
   * socket's reads are fresh buffers), so the session need not copy what a channel keeps until
   * it is sent. Default false: chunks are copied where the channel would keep them.
   */
  readonly handsOverChunks?: boolean;
}

/** Connections to ports of one sandbox, over one connection to the server. */
export interface PortSession {
  /** A connection to `port`; rejects with a SandboxError (TunnelError with `port`: nothing listens there). */
  open(port: number, options?: OpenStreamOptions): Promise<PortConnection>;
  /**
   * Settles when the session is over: with undefined after `close()`/`shutdown()`, with the
   * error when the connection to the server dropped or the server ended it. Never rejects.
   */
  readonly ended: Promise<SandboxError | undefined>;
  /** True once the session is over (`ended` has settled or is about to). */
  readonly over: boolean;
  /** Opens nothing more; closes once its connections are over. */
  shutdown(): void;
  /** Closes now: connections still open error with a TunnelError. */
  close(): void;
}

/** Opens a session to the ports of `sandboxId`; rejects with a SandboxError. */
export type OpenPortSession = (sandboxId: string, signal?: AbortSignal) => Promise<PortSession>;

/** The client's end of one connection to the tunnel route, carrying port-mux.ts frames. */
export interface TunnelChannel {
  /**
   * Sends bytes, in order. The channel may keep `parts` until they are sent: they must not
   * change meanwhile.
   */
  send(parts: readonly Uint8Array[]): void;
  /** Resolves once the channel wants more; undefined when it does now. */
  drained(): Promise<void> | undefined;
  /** Whether `send` keeps the parts (true) or copies them at once (false: a WebSocket). */
  readonly keepsParts: boolean;
  /** Closes the connection. */
  close(): void;
}

export interface TunnelChannelEvents {
  /** Bytes from the server, in order, cut anywhere. */
  bytes(chunk: Uint8Array): void;
  /** The connection is closed (`why` says how, for messages). Called once, not after `close()`. */
  closed(why: string): void;
}

export interface TunnelChannelRequest {
  /** The route's URL (http: or https:). */
  readonly url: string;
  readonly token?: string | undefined;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Opens a channel to the tunnel route: resolves once the upgrade is done (the frames start
 * then), rejects with a SandboxError (ConnectionError when the server cannot be reached or does
 * not serve the route).
 */
export type OpenTunnelChannel = (request: TunnelChannelRequest, events: TunnelChannelEvents) => Promise<TunnelChannel>;

/** Where `withTunnelChannel` leaves a transport's channel. */
export const TUNNEL_CHANNEL = Symbol.for("@sbx/core/tunnelChannel");

/** `transport`, carrying the channel its clients' `sb.connect` / `sb.tunnel` open to the tunnel route. */
export function withTunnelChannel<T extends object>(transport: T, open: OpenTunnelChannel): T {
  return attachTo(transport, TUNNEL_CHANNEL, open);
}

/** The channel `withTunnelChannel` attached to `transport`, if it did. */
export function attachedTunnelChannel(transport: unknown): OpenTunnelChannel | undefined {
  return attachedFunction<OpenTunnelChannel>(transport, TUNNEL_CHANNEL);
}

/** A session over a dialer that reaches ports without a network (the in-process fake's): it never drops. */
export function dialerSession(dial: PortDialer, sandboxId: string): PortSession {
  let end: (value: undefined) => void = () => {};
  const ended = new Promise<undefined>((resolve) => {
    end = resolve;
  });
  let over = false;
  const close = () => {
    over = true;
    end(undefined);
  };
  return {
    open: (port, options) => dial(sandboxId, port, options?.signal),
    ended,
    get over() {
      return over;
    },
    shutdown: close,
    close,
  };
}
