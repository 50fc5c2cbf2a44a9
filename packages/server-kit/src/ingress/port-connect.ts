/**
 * The port-connect route (Node; its contract is `@sbx/proto`'s port-connect.ts): a WebSocket on
 * the API's own port carrying one TCP connection to a port inside a sandbox (`sb.connect`,
 * `sb.tunnel`), for the sbx server and the fake alike. The token is checked and the engine's
 * checks run (`portConnectProblem`), then the port is dialed through the target's
 * `IngressDialer`; only then is the upgrade completed — with `{"ok":true}` and the bytes after
 * it, or with a close code and reason that every client (browsers too) can read.
 *
 * Backpressure both ways, by acks (the contract's flow control): the port's side is paused
 * while the client has more than PORT_CONNECT_WINDOW bytes unacknowledged or the socket's own
 * buffer is full; the client's bytes are acknowledged as the port's side takes them, so the
 * client stops sending while it does not, and the WebSocket itself is always read.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import {
  PORT_CONNECT_ACK_EVERY,
  PORT_CONNECT_CLOSE,
  PORT_CONNECT_END,
  PORT_CONNECT_MAX_FRAME,
  PORT_CONNECT_PREFIX,
  PORT_CONNECT_PROTOCOL,
  PORT_CONNECT_READY,
  PORT_CONNECT_WINDOW,
  type PortConnectRefusal,
  parsePortConnectPath,
  tokenOfProtocol,
} from "@sbx/proto";
import { type WebSocket, WebSocketServer } from "ws";
import type { Engine } from "../engine/engine.js";
import { portConnectProblem, portOfPath } from "../engine/port-connect-check.js";
import { closeRefusedUpgrade, type UpgradeRoute } from "../listen.js";
import { IngressDialError, type IngressDialer } from "./gateway.js";

/** How long a refused client has to answer its close frame. */
const REFUSED_GRACE_MS = 1000;

export interface PortConnectRouteOptions {
  readonly engine: Engine;
  readonly dialer: IngressDialer;
  /** Checks an `Authorization` header value, as the listener's `authorize` does. */
  readonly authorize?: (authorization: string | null) => boolean;
  /** Told of a failure that is neither the client's nor the port's (a dialer bug). */
  readonly onError?: (error: unknown) => void;
}

/** Socket bytes queued past which the port's side is paused. */
const SOCKET_HIGH_WATER = 1024 * 1024;
const NORMAL_CLOSE = 1000;
/** A close reason is at most 123 bytes. */
const MAX_REASON_BYTES = 123;

/** The route, for `listenConnect`'s `upgradeRoutes`. */
export function portConnectRoute(options: PortConnectRouteOptions): UpgradeRoute {
  const server = new WebSocketServer({
    noServer: true,
    maxPayload: PORT_CONNECT_MAX_FRAME,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(PORT_CONNECT_PROTOCOL) ? PORT_CONNECT_PROTOCOL : false),
  });
  // A refused client gets its close frame, and the socket goes a moment later whether or not it
  // answers the close (ws would wait 30 s for it).
  const refuse = (req: IncomingMessage, socket: Duplex, head: Buffer, refusal: PortConnectRefusal, message: string) =>
    server.handleUpgrade(req, socket, head, (ws) => {
      ws.close(PORT_CONNECT_CLOSE[refusal], reasonOf(message));
      setTimeout(() => ws.terminate(), REFUSED_GRACE_MS).unref();
    });
  return {
    prefix: PORT_CONNECT_PREFIX,
    handle(req, socket, head, accepted) {
      void connect(req, socket, head, accepted).catch((error: unknown) => {
        options.onError?.(error);
        socket.destroy();
      });
    },
  };

  async function connect(req: IncomingMessage, socket: Duplex, head: Buffer, accepted: () => void): Promise<void> {
    const named = parsePortConnectPath(req.url?.split("?", 2)[0] ?? "");
    if (!named) {
      closeRefusedUpgrade(socket, "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      return;
    }
    if (!authorized(req, options.authorize)) {
      return refuse(req, socket, head, "unauthenticated", "missing or wrong bearer token");
    }
    accepted(); // (counts as a request in flight from here: see listen.ts)
    const port = portOfPath(named.port);
    const problem = portConnectProblem(options.engine, named.sandboxId, port);
    if (problem) return refuse(req, socket, head, problem.refusal, problem.message);
    let upstream: Duplex;
    try {
      upstream = await options.dialer.dial(named.sandboxId, port);
    } catch (error) {
      if (error instanceof IngressDialError) {
        return refuse(req, socket, head, error.reason === "refused" ? "refused" : "unsupported", error.message);
      }
      options.onError?.(error);
      return refuse(req, socket, head, "internal", `port ${port} of sandbox ${named.sandboxId} could not be dialed`);
    }
    if (socket.destroyed) {
      upstream.destroy();
      return;
    }
    server.handleUpgrade(req, socket, head, (ws) => bridge(ws, upstream, `port ${port} of sandbox ${named.sandboxId}`));
  }
}

/** The Authorization header, else a bearer subprotocol, checked. */
function authorized(req: IncomingMessage, authorize: ((authorization: string | null) => boolean) | undefined): boolean {
  if (!authorize) return true;
  const header = req.headers.authorization;
  if (authorize(typeof header === "string" ? header : null)) return true;
  const offered = req.headers["sec-websocket-protocol"];
  if (typeof offered !== "string") return false;
  for (const protocol of offered.split(",")) {
    const token = tokenOfProtocol(protocol.trim());
    if (token !== undefined && authorize(`Bearer ${token}`)) return true;
  }
  return false;
}

/** Carries bytes between the WebSocket and the port's connection until both have ended. */
function bridge(ws: WebSocket, upstream: Duplex, where: string): void {
  let sent = 0;
  let acked = 0;
  /** The client's bytes: received, written to the port's side (its write callbacks), acknowledged. */
  let received = 0;
  let consumed = 0;
  let ackedToClient = 0;
  let clientEnded = false;
  let portEnded = false;
  let paused = false;
  const open = () => ws.readyState === ws.OPEN;
  const roomToSend = () => sent - acked < PORT_CONNECT_WINDOW && ws.bufferedAmount < SOCKET_HIGH_WATER;
  const resumeIfRoom = () => {
    if (paused && open() && roomToSend()) {
      paused = false;
      upstream.resume();
    }
  };
  const finishIfDone = () => {
    if (clientEnded && portEnded && open()) ws.close(NORMAL_CLOSE);
  };

  ws.send(PORT_CONNECT_READY);
  upstream.on("data", (chunk: Buffer) => {
    if (!open()) return;
    for (let at = 0; at < chunk.length; at += PORT_CONNECT_MAX_FRAME) {
      const frame = chunk.subarray(at, at + PORT_CONNECT_MAX_FRAME);
      sent += frame.length;
      ws.send(frame, { binary: true }, resumeIfRoom);
    }
    if (!roomToSend()) {
      paused = true;
      upstream.pause();
    }
  });
  upstream.on("end", () => {
    portEnded = true;
    if (open()) ws.send(PORT_CONNECT_END);
    finishIfDone();
  });
  upstream.on("error", () => {});
  upstream.on("close", () => {
    if (!open()) return;
    if (portEnded) ws.close(NORMAL_CLOSE);
    else ws.close(PORT_CONNECT_CLOSE.refused, reasonOf(`${where}: the connection was closed by the port's side`));
  });

  ws.on("message", (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      if (clientEnded) return; // bytes after an end are the client's mistake: dropped
      received += data.length;
      if (received - consumed > PORT_CONNECT_WINDOW + PORT_CONNECT_MAX_FRAME) {
        ws.close(PORT_CONNECT_CLOSE.invalid, "the client sent past its window");
        return;
      }
      upstream.write(data, () => {
        consumed += data.length;
        if (consumed - ackedToClient >= PORT_CONNECT_ACK_EVERY && open()) {
          ackedToClient = consumed;
          ws.send(JSON.stringify({ ack: consumed }));
        }
      });
      return;
    }
    const message = controlMessage(data);
    if (message?.end === true && !clientEnded) {
      clientEnded = true;
      upstream.end();
      finishIfDone();
    } else if (typeof message?.ack === "number" && Number.isSafeInteger(message.ack)) {
      if (message.ack > acked && message.ack <= sent) acked = message.ack;
      resumeIfRoom();
    }
  });
  ws.on("error", () => upstream.destroy());
  ws.on("close", () => upstream.destroy());
}

function controlMessage(data: Buffer): { end?: unknown; ack?: unknown } | undefined {
  if (data.length > 256) return undefined;
  try {
    const value: unknown = JSON.parse(data.toString("utf8"));
    return typeof value === "object" && value !== null ? (value as { end?: unknown; ack?: unknown }) : undefined;
  } catch {
    return undefined;
  }
}

/** `message` cut to fit a close frame's reason (whole characters). */
function reasonOf(message: string): string {
  let reason = message;
  while (Buffer.byteLength(reason) > MAX_REASON_BYTES) reason = reason.slice(0, -1);
  return reason;
}
