/**
 * A `TunnelChannel` over a socket with Node's stream interface (a node:net or node:tls socket,
 * which @sbx/node and @sbx/bun both have) once its upgrade to the tunnel route is done: the
 * socket's bytes are the frames as they are. Sends are written at once (corked together) and
 * kept by the socket until written; writers wait while more than a mark is queued on it. No
 * Node import here: the socket is whatever has this shape. Browser-safe to load.
 */
import type { TunnelChannel, TunnelChannelEvents } from "./port-session.js";

/** Bytes queued on the socket past which writers wait for its drain. */
const HIGH_WATER = 1024 * 1024;
/** How long a closed channel's socket may take to end before it is destroyed. */
const END_GRACE_MS = 1000;

/** What the channel uses of a node:net `Socket`. */
export interface StreamSocket {
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  readonly writableLength: number;
  cork(): void;
  uncork(): void;
  write(bytes: Uint8Array): boolean;
  end(): unknown;
  destroy(): unknown;
  on(event: "data", listener: (chunk: Uint8Array) => void): unknown;
  on(event: "close", listener: (hadError: boolean) => void): unknown;
  on(event: "drain" | "error", listener: () => void): unknown;
  off(event: "drain" | "close", listener: () => void): unknown;
}

/** The channel over `socket`, whose upgrade is done; its bytes from now on go to `events`. */
export function streamSocketChannel(socket: StreamSocket, events: TunnelChannelEvents): TunnelChannel {
  let closedByUs = false;
  let draining: Promise<void> | undefined;
  socket.on("data", (chunk) => events.bytes(chunk));
  socket.on("error", () => {}); // the close that follows says it
  socket.on("close", (hadError) => {
    if (!closedByUs) events.closed(hadError ? "the connection failed" : "the server closed the connection");
  });
  return {
    keepsParts: true,
    send(parts) {
      if (socket.destroyed || socket.writableEnded) return;
      socket.cork();
      for (const part of parts) socket.write(part);
      socket.uncork();
    },
    drained() {
      if (socket.writableLength < HIGH_WATER || socket.destroyed) return undefined;
      draining ??= new Promise<void>((done) => {
        const finish = () => {
          socket.off("drain", finish);
          socket.off("close", finish);
          draining = undefined;
          done();
        };
        socket.on("drain", finish);
        socket.on("close", finish);
      });
      return draining;
    },
    close() {
      closedByUs = true;
      socket.end();
      const timer = setTimeout(() => socket.destroy(), END_GRACE_MS);
      (timer as { unref?: () => void }).unref?.();
    },
  };
}
