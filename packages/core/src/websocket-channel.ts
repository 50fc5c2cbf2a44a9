/**
 * The default `TunnelChannel`: a WebSocket to the tunnel route (`@sbx/proto`'s port-mux.ts)
 * through `globalThis.WebSocket` — browsers, Deno, Bun, Node ≥ 22. Frames travel in binary
 * messages; the token goes as a subprotocol (browsers cannot set headers on a WebSocket).
 * Loaded on first use, so apps that never connect do not download it.
 *
 * A browser's WebSocket cannot pause its reading and says nothing when its buffer drains:
 * the session's windows bound what is in flight, and `drained` polls `bufferedAmount`.
 */
import { bearerProtocol, MUX_PROTOCOL } from "@sbx/proto";
import { concat } from "./bytes.js";
import { AbortedError, ConnectionError, UnsupportedError } from "./errors.js";
import type { OpenTunnelChannel } from "./port-session.js";

/** Bytes queued in the WebSocket past which writers wait. */
const HIGH_WATER = 8 * 1024 * 1024;
const DRAIN_POLL_MS = 5;
const NORMAL_CLOSE = 1000;

export const openWebSocketChannel: OpenTunnelChannel = async (request, events) => {
  const WebSocketClass = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
  if (!WebSocketClass) {
    throw new UnsupportedError("sb.connect needs WebSocket (browsers, Deno, Bun, Node 22 or later)");
  }
  const { signal } = request;
  if (signal?.aborted) throw new AbortedError("the operation was aborted", { cause: signal.reason });
  const url = new URL(request.url);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const protocols = [MUX_PROTOCOL];
  if (request.token) protocols.push(bearerProtocol(request.token));
  const socket = new WebSocketClass(url.toString(), protocols);
  socket.binaryType = "arraybuffer";
  let closedByUs = false;
  await new Promise<void>((resolve, reject) => {
    const done = (error?: Error) => {
      socket.removeEventListener("open", onOpen);
      socket.removeEventListener("close", onClose);
      signal?.removeEventListener("abort", onAbort);
      if (error) reject(error);
      else resolve();
    };
    const onOpen = () => done();
    const onClose = (event: CloseEvent) =>
      done(
        new ConnectionError(
          `${request.url}: the server did not open a tunnel (WebSocket close ${event.code}${
            event.reason ? `: ${event.reason}` : ""
          }); is the endpoint an sbx server that serves tunnels?`,
        ),
      );
    const onAbort = () => {
      closedByUs = true;
      socket.close();
      done(new AbortedError("the operation was aborted", { cause: signal?.reason }));
    };
    socket.addEventListener("open", onOpen);
    socket.addEventListener("close", onClose);
    socket.addEventListener("error", () => {}); // a close event follows, with what there is to say
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  socket.addEventListener("message", (event: MessageEvent) => {
    if (typeof event.data === "string") return; // (the route sends none)
    events.bytes(new Uint8Array(event.data as ArrayBuffer));
  });
  socket.addEventListener("close", (event: CloseEvent) => {
    if (!closedByUs) events.closed(`WebSocket close ${event.code}${event.reason ? `: ${event.reason}` : ""}`);
  });
  let draining: Promise<void> | undefined;
  return {
    keepsParts: false,
    send(parts) {
      if (socket.readyState !== socket.OPEN) return;
      socket.send(concat(parts) as unknown as BufferSource);
    },
    drained() {
      if (socket.bufferedAmount < HIGH_WATER || socket.readyState !== socket.OPEN) return undefined;
      draining ??= new Promise<void>((resolve) => {
        const poll = () => {
          if (socket.bufferedAmount < HIGH_WATER || socket.readyState !== socket.OPEN) {
            draining = undefined;
            resolve();
          } else setTimeout(poll, DRAIN_POLL_MS);
        };
        setTimeout(poll, DRAIN_POLL_MS);
      });
      return draining;
    },
    close() {
      closedByUs = true;
      if (socket.readyState === socket.OPEN || socket.readyState === socket.CONNECTING) socket.close(NORMAL_CLOSE);
    },
  };
};
