/**
 * The default `PortDialer`: one WebSocket per connection to the port-connect route (its
 * contract is `@sbx/proto`'s port-connect.ts), through `globalThis.WebSocket` — browsers,
 * Deno, Bun, Node ≥ 22. Loaded on first use, so apps that never connect do not download it.
 *
 * Backpressure both ways, by the contract's acks: reads are acknowledged as the app takes
 * them, so the server stops sending (and the sandbox's app is slowed down) while this side
 * does not read; writes wait while more than PORT_CONNECT_WINDOW bytes are unacknowledged by
 * the server, so nothing piles up in the socket's buffer.
 */
import {
  bearerProtocol,
  PORT_CONNECT_ACK_EVERY,
  PORT_CONNECT_CLOSE,
  PORT_CONNECT_END,
  PORT_CONNECT_MAX_FRAME,
  PORT_CONNECT_PROTOCOL,
  PORT_CONNECT_READY,
  PORT_CONNECT_WINDOW,
  type PortConnectRefusal,
  portConnectPath,
} from "@sbx/proto";
import type { ResolvedConfig } from "./config.js";
import { AbortedError, ConnectionError, type SandboxError, TunnelError, UnsupportedError } from "./errors.js";
import { type PortConnection, type PortDialer, portConnectError } from "./port-dialer.js";

const NORMAL_CLOSE = 1000;

const REFUSALS = new Map<number, PortConnectRefusal>(
  Object.entries(PORT_CONNECT_CLOSE).map(([refusal, code]) => [code, refusal as PortConnectRefusal]),
);

/** The WebSocket dialer for `config`'s endpoint and token. */
export function websocketDialer(config: ResolvedConfig): PortDialer {
  return (sandboxId, port, signal) => openPortSocket(config, sandboxId, port, signal);
}

function socketUrl(endpoint: string, sandboxId: string, port: number): string {
  const url = new URL(endpoint);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const base = url.pathname.replace(/\/+$/, "");
  url.pathname = base + portConnectPath(sandboxId, port);
  url.search = "";
  url.hash = "";
  return url.toString();
}

async function openPortSocket(
  config: ResolvedConfig,
  sandboxId: string,
  port: number,
  signal: AbortSignal | undefined,
): Promise<PortConnection> {
  const WebSocketClass = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
  if (!WebSocketClass) {
    throw new UnsupportedError("sb.connect needs WebSocket (browsers, Deno, Bun, Node 22 or later)");
  }
  if (signal?.aborted) throw new AbortedError("the operation was aborted", { cause: signal.reason });
  const protocols = [PORT_CONNECT_PROTOCOL];
  if (config.token) protocols.push(bearerProtocol(config.token));
  const socket = new WebSocketClass(socketUrl(config.endpoint, sandboxId, port), protocols);
  socket.binaryType = "arraybuffer";
  const where = `port ${port} of sandbox ${sandboxId}`;
  await new Promise<void>((resolve, reject) => {
    const done = (error?: SandboxError) => {
      socket.removeEventListener("message", onMessage);
      socket.removeEventListener("close", onClose);
      signal?.removeEventListener("abort", onAbort);
      if (error) reject(error);
      else resolve();
    };
    const onMessage = (event: MessageEvent) => {
      if (event.data === PORT_CONNECT_READY) return done();
      socket.close();
      done(new ConnectionError(`${where}: the server's answer was not the port-connect route's`));
    };
    const onClose = (event: CloseEvent) => done(closeError(event, where, port, false));
    const onAbort = () => {
      socket.close();
      done(new AbortedError("the operation was aborted", { cause: signal?.reason }));
    };
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", onClose);
    socket.addEventListener("error", () => {}); // a close event follows, with what there is to say
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  return connectionOver(socket, where, port);
}

/** The error a close says, or undefined for a clean end. */
function closeError(event: CloseEvent, where: string, port: number, opened: boolean): SandboxError {
  const refusal = REFUSALS.get(event.code);
  if (refusal) return portConnectError(refusal, event.reason || `${where}: ${refusal}`, port);
  if (opened) {
    return new TunnelError(`${where}: the connection dropped (WebSocket close ${event.code})`, { port });
  }
  return new ConnectionError(
    `${where}: the server did not open the connection (WebSocket close ${event.code}${
      event.reason ? `: ${event.reason}` : ""
    }); is the endpoint an sbx server that serves sb.connect?`,
  );
}

function connectionOver(socket: WebSocket, where: string, port: number): PortConnection {
  const queue: Uint8Array[] = [];
  let wake: (() => void) | undefined;
  let wakeWriter: (() => void) | undefined;
  let remoteEnded = false;
  let closed: SandboxError | "clean" | undefined;
  let taken = 0;
  let acked = 0;
  /** What this side sent, and the server's ack of it. */
  let sent = 0;
  let serverAcked = 0;
  const notify = () => {
    const w = wake;
    const ww = wakeWriter;
    wake = undefined;
    wakeWriter = undefined;
    w?.();
    ww?.();
  };
  socket.addEventListener("message", (event: MessageEvent) => {
    if (typeof event.data === "string") {
      if (event.data === PORT_CONNECT_END) remoteEnded = true;
      else {
        const ack = ackOf(event.data);
        if (ack !== undefined && ack > serverAcked && ack <= sent) serverAcked = ack;
      }
    } else queue.push(new Uint8Array(event.data as ArrayBuffer));
    notify();
  });
  socket.addEventListener("close", (event: CloseEvent) => {
    closed = event.code === NORMAL_CLOSE ? "clean" : closeError(event, where, port, true);
    notify();
  });
  const untilAcked = async () => {
    while (sent - serverAcked >= PORT_CONNECT_WINDOW && socket.readyState === socket.OPEN) {
      await new Promise<void>((resolve) => {
        wakeWriter = resolve;
      });
    }
  };
  const readable = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const chunk = queue.shift();
          if (chunk) {
            controller.enqueue(chunk);
            taken += chunk.byteLength;
            if (taken - acked >= PORT_CONNECT_ACK_EVERY && socket.readyState === socket.OPEN) {
              acked = taken;
              socket.send(JSON.stringify({ ack: taken }));
            }
            return;
          }
          if (remoteEnded || closed === "clean") return controller.close();
          if (closed) return controller.error(closed);
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      },
      cancel() {
        socket.close(NORMAL_CLOSE);
      },
    },
    { highWaterMark: 0 },
  );
  const failure = () =>
    closed && closed !== "clean" ? closed : new TunnelError(`${where}: the connection is closed`, { port });
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      if (!(chunk instanceof Uint8Array)) throw new TypeError("sb.connect's writable takes Uint8Array chunks");
      for (let at = 0; at < chunk.byteLength; at += PORT_CONNECT_MAX_FRAME) {
        await untilAcked();
        if (socket.readyState !== socket.OPEN) throw failure();
        const frame = chunk.subarray(at, at + PORT_CONNECT_MAX_FRAME);
        socket.send(frame as unknown as BufferSource);
        sent += frame.byteLength;
      }
    },
    async close() {
      // Frames go out in order: the end follows every byte written before it.
      if (socket.readyState !== socket.OPEN) {
        if (closed === "clean") return;
        throw failure();
      }
      socket.send(PORT_CONNECT_END);
    },
    abort() {
      socket.close(NORMAL_CLOSE);
    },
  });
  return { readable, writable };
}

/** The byte count of an `{"ack":n}` control message. */
function ackOf(text: string): number | undefined {
  if (text.length > 64) return undefined;
  try {
    const value = (JSON.parse(text) as { ack?: unknown }).ack;
    return typeof value === "number" && Number.isSafeInteger(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
