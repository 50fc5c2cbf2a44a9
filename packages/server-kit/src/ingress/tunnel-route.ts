/**
 * The tunnel route (Node; its contract is `@sbx/proto`'s port-mux.ts): one connection on the
 * API's own port carrying many TCP connections to ports of one sandbox (`sb.connect`,
 * `sb.tunnel`), for the sbx server and the fake alike. Two kinds of upgrade reach it: a
 * WebSocket (browsers) and a plain HTTP/1.1 upgrade to `sbx.tunnel.v1` (Node's client: no
 * WebSocket framing, no masking). Either way the token is checked and the upgrade completed,
 * then the first frame says whether the connection is usable (READY) or why not (GOAWAY, which
 * every client, browsers too, can read); tunnel-session.ts runs it from there.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import {
  MUX_HEAD_BYTES,
  MUX_MAX_DATA,
  MUX_PROTOCOL,
  MUX_ROUTE_PREFIX,
  type MuxCode,
  parseMuxPath,
  tokenOfProtocol,
} from "@sbx/proto";
import { type WebSocket, WebSocketServer } from "ws";
import type { Engine } from "../engine/engine.js";
import { closeRefusedUpgrade, type UpgradeRoute } from "../listen.js";
import type { IngressDialer } from "./gateway.js";
import { TunnelBudget, type TunnelLimits } from "./tunnel-budget.js";
import { type TunnelChannel, TunnelSession } from "./tunnel-session.js";

export interface TunnelRouteOptions {
  readonly engine: Engine;
  readonly dialer: IngressDialer;
  /** Checks an `Authorization` header value, as the listener's `authorize` does. */
  readonly authorize?: (authorization: string | null) => boolean;
  /** Told of a failure that is neither the client's nor the port's (a dialer bug). */
  readonly onError?: (error: unknown) => void;
  /** What clients may hold (tunnel-budget.ts; the defaults otherwise), over all the route's connections. */
  readonly limits?: Partial<TunnelLimits>;
  /**
   * Offered each plain-upgrade connection once it is upgraded and checked (nothing sent on it
   * yet, nothing read past the request): true when it has taken the connection and serves it
   * from then on, READY first (the sbx server's tunnel relay); false leaves it to this route.
   */
  readonly handOff?: (sandboxId: string, socket: Duplex) => Promise<boolean>;
}

/** How long a closed connection's client has to take its last frames before the socket goes. */
const CLOSE_GRACE_MS = 1000;
const NORMAL_CLOSE = 1000;
/** Silence on a connection after which TCP keepalive probes start. */
const KEEPALIVE_DELAY_MS = 30_000;

/** The route, for `listenConnect`'s `upgradeRoutes`. */
export function tunnelRoute(options: TunnelRouteOptions): UpgradeRoute {
  const budget = new TunnelBudget(options.limits);
  const highWater = budget.limits.queueHighWater;
  const websockets = new WebSocketServer({
    noServer: true,
    // A message holds frames or parts of them (receivers parse them as one byte stream); a
    // client sends at most a DATA frame and its head at once.
    maxPayload: MUX_MAX_DATA + MUX_HEAD_BYTES,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(MUX_PROTOCOL) ? MUX_PROTOCOL : false),
  });
  return {
    prefix: MUX_ROUTE_PREFIX,
    handle(req, socket, head, accepted) {
      const sandboxId = parseMuxPath(req.url?.split("?", 2)[0] ?? "");
      const kind = upgradeKind(req);
      if (sandboxId === undefined || !kind) {
        closeRefusedUpgrade(socket, "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
      }
      // A client that vanished without a word (its machine gone, a NAT dropped the mapping) is
      // found by TCP keepalives; a live one pings when it hears nothing (mux-session.ts).
      (socket as { setKeepAlive?: (on: boolean, delayMs: number) => void }).setKeepAlive?.(true, KEEPALIVE_DELAY_MS);
      const refusal = refusalOf(req, sandboxId, options);
      if (!refusal) accepted(); // (counts as a request in flight from here: see listen.ts)
      const run = (channel: TunnelChannel, feed: (session: TunnelSession) => void) => {
        const session = new TunnelSession(channel, {
          engine: options.engine,
          dialer: options.dialer,
          sandboxId,
          budget,
          onError: options.onError,
        });
        if (refusal) return session.goAway(refusal.code, refusal.message);
        session.start();
        feed(session);
      };
      if (kind === "websocket") {
        websockets.handleUpgrade(req, socket, head, (ws) => {
          ws.on("error", () => ws.terminate());
          run(websocketChannel(ws, highWater), (session) => feedFromWebSocket(ws, session));
        });
      } else {
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${MUX_PROTOCOL}\r\n\r\n`);
        const serveHere = () => run(socketChannel(socket), (session) => feedFromSocket(socket, head, session));
        // (A client sends nothing before READY; one that did is served here, its bytes read.)
        if (refusal || !options.handOff || head.length > 0) return serveHere();
        options.handOff(sandboxId, socket).then(
          (taken) => {
            if (!taken && !socket.destroyed) serveHere();
          },
          (error: unknown) => {
            options.onError?.(error);
            socket.destroy();
          },
        );
      }
    },
  };
}

function upgradeKind(req: IncomingMessage): "websocket" | "plain" | undefined {
  const upgrade = (req.headers.upgrade ?? "").toLowerCase();
  if (upgrade === "websocket") return "websocket";
  if (upgrade === MUX_PROTOCOL && req.method === "GET") return "plain";
  return undefined;
}

/** Why the connection is refused (before any frame is read), or undefined when it may be used. */
function refusalOf(
  req: IncomingMessage,
  sandboxId: string,
  options: TunnelRouteOptions,
): { code: MuxCode; message: string } | undefined {
  if (!authorized(req, options.authorize)) return { code: "unauthenticated", message: "missing or wrong bearer token" };
  const sandbox = options.engine.sandboxes.get(sandboxId);
  if (!sandbox) return { code: "notFound", message: `sandbox ${sandboxId} not found` };
  if (!sandbox.running) return { code: "notRunning", message: `sandbox ${sandboxId} has finished` };
  return undefined;
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

function websocketChannel(ws: WebSocket, highWater: number): TunnelChannel {
  let drainListener: (() => void) | undefined;
  let waiting = false;
  const gone = () => {
    if (waiting && ws.bufferedAmount < highWater) {
      waiting = false;
      drainListener?.();
    }
  };
  return {
    send(parts, sent) {
      if (ws.readyState !== ws.OPEN) return;
      const message = parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts);
      ws.send(message, { binary: true }, (error) => {
        if (!error) sent?.();
        gone();
      });
    },
    get queued() {
      const queued = ws.bufferedAmount;
      if (queued >= highWater) waiting = true;
      return queued;
    },
    onDrain(listener) {
      drainListener = listener;
    },
    pauseReading() {
      ws.pause();
    },
    resumeReading() {
      ws.resume();
    },
    close() {
      if (ws.readyState === ws.OPEN) ws.close(NORMAL_CLOSE);
      setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
    },
  };
}

function feedFromWebSocket(ws: WebSocket, session: TunnelSession): void {
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    if (!isBinary) return session.goAway("protocol", "text messages are not frames");
    session.receive(data);
  });
  ws.on("close", () => session.closed());
}

function socketChannel(socket: Duplex): TunnelChannel {
  return {
    send(parts, sent) {
      if (socket.destroyed || socket.writableEnded) return;
      (socket as { cork?: () => void }).cork?.();
      const last = parts.length - 1;
      parts.forEach((part, i) => {
        if (i === last && sent) socket.write(part, (error) => error || sent());
        else socket.write(part);
      });
      (socket as { uncork?: () => void }).uncork?.();
    },
    get queued() {
      return socket.writableLength;
    },
    onDrain(listener) {
      socket.on("drain", listener);
    },
    pauseReading() {
      socket.pause();
    },
    resumeReading() {
      socket.resume();
    },
    close() {
      socket.end();
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    },
  };
}

function feedFromSocket(socket: Duplex, head: Buffer, session: TunnelSession): void {
  (socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  socket.on("data", (chunk: Buffer) => session.receive(chunk));
  socket.on("end", () => socket.end());
  socket.on("error", () => socket.destroy());
  socket.on("close", () => session.closed());
  if (head.length > 0) session.receive(head);
}
