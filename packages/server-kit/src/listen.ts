/**
 * Serves Connect routes on one port for every protocol: Connect over HTTP/1.1 and HTTP/2,
 * and gRPC. Node's cleartext HTTP/2 server refuses HTTP/1.1 clients, so a plain TCP server
 * peeks at each connection's first bytes and hands the socket to the matching server.
 * Node-only (its own entry point, "@sbx/server-kit/listen"), so the browser-safe parts of
 * this package never pull in node: modules.
 */
import type { ConnectRouter, HandlerContext, Interceptor } from "@connectrpc/connect";
import { ConnectionGuard, type ConnectionLimits } from "./connection-guard.js";
import { READ_MAX_BYTES } from "./request-limits.js";

export type { ConnectionLimits } from "./connection-guard.js";

export interface ListenOptions {
  readonly host?: string;
  /** 0 (default): any free port. */
  readonly port?: number;
  /** Allowed CORS origin (default "*"). */
  readonly corsOrigin?: string;
  /**
   * Called when a handler fails in a way no client was told about (default: console.error).
   * A client that went away mid-response is not a failure and is not reported.
   */
  readonly onHandlerError?: (method: string, error: unknown) => void;
  /** Plain HTTP routes served beside the Connect ones (e.g. the raw output stream). */
  readonly plainRoutes?: readonly PlainRoute[];
  /**
   * Checks an RPC's Authorization header before any of its body is read; a request it
   * refuses is answered Unauthenticated in its protocol's way. Plain routes check for
   * themselves (before reading their body); CORS preflights need no token.
   */
  readonly authorize?: (authorization: string | null) => boolean;
  /** Largest request message an RPC reads (default READ_MAX_BYTES); a route may set its own (see serveWithLimits). */
  readonly readMaxBytes?: number;
  /** Timeouts and the cap for connections with no request in flight. */
  readonly connections?: ConnectionLimits;
}

type NodeRequest = import("node:http").IncomingMessage | import("node:http2").Http2ServerRequest;
type NodeResponse = import("node:http").ServerResponse | import("node:http2").Http2ServerResponse;

/** A non-Connect route: requests whose path starts with `prefix` go to `handle`. */
export interface PlainRoute {
  readonly prefix: string;
  handle(req: NodeRequest, res: NodeResponse): Promise<void>;
}

export interface Listener {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const HTTP2_PREFACE = "PRI * HTTP/2.0";

export async function listenConnect(
  routes: (router: ConnectRouter) => void,
  interceptors: Interceptor[],
  options: ListenOptions = {},
): Promise<Listener> {
  const [
    { createServer: createHttp1 },
    { createServer: createHttp2 },
    net,
    { universalRequestFromNodeRequest, universalResponseToNodeResponse },
    { Code, ConnectError, cors, createConnectRouter },
  ] = await Promise.all([
    import("node:http"),
    import("node:http2"),
    import("node:net"),
    import("@connectrpc/connect-node"),
    import("@connectrpc/connect"),
  ]);
  const authorize = options.authorize;
  // Runs before a request's body is read (Connect's interceptors run after).
  const requestGate = (context: HandlerContext) => {
    reclassifyUndecodableRequests(context, ConnectError, Code);
    if (authorize && !authorize(context.requestHeader.get("authorization"))) {
      throw new ConnectError("missing or wrong bearer token", Code.Unauthenticated);
    }
  };
  // Compression off: streamed output would spend more CPU in zlib than it saves on the wire.
  const router = createConnectRouter({
    interceptors,
    acceptCompression: [],
    readMaxBytes: options.readMaxBytes ?? READ_MAX_BYTES,
    requestGate,
  });
  routes(router);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const onHandlerError =
    options.onHandlerError ??
    ((method: string, error: unknown) => console.error(`sbx: handler for ${method} failed`, error));
  // Like connect-node's adapter, except that a client leaving mid-response (a dropped
  // connection, a cancelled read) is routine for streaming reads and is not logged as a failure.
  const plainRoutes = options.plainRoutes ?? [];
  const adapter = (req: NodeRequest, res: NodeResponse) => {
    if (!("stream" in req)) closeIfBodyUnread(req, res as import("node:http").ServerResponse);
    const path = req.url?.split("?", 2)[0] ?? "";
    const plain = plainRoutes.find((route) => path.startsWith(route.prefix));
    if (plain) {
      plain.handle(req, res).catch((error: unknown) => {
        if (!req.destroyed && !(res as { destroyed?: boolean }).destroyed) onHandlerError(path, error);
        // A failure mid-body must not look like a clean end: drop the connection instead.
        if (res.headersSent) {
          if ("stream" in res) res.stream.destroy();
          else res.destroy();
        } else (res as import("node:http").ServerResponse).writeHead(500).end();
      });
      return;
    }
    const handler = handlers.get(path);
    if (!handler) {
      // A Connect error body, so a client can tell "no such method" on an sbx server from a
      // server that is not sbx at all (a bare 404).
      (res as import("node:http").ServerResponse).writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "unimplemented", message: `no method ${path} on this sbx server` }));
      return;
    }
    handler(universalRequestFromNodeRequest(req as never, res as never, undefined, undefined))
      .then((uRes) => universalResponseToNodeResponse(uRes, res as never))
      .catch((error: unknown) => {
        const clientLeft =
          req.destroyed ||
          (res as { destroyed?: boolean }).destroyed === true ||
          ConnectError.from(error).code === Code.Aborted;
        if (!clientLeft) onHandlerError(handler.method.name, error);
      });
  };
  const origin = options.corsOrigin ?? "*";
  type Response = {
    setHeader(name: string, value: string): void;
    writeHead(status: number): void;
    end(): void;
  };
  const handle = (req: NodeRequest, res: Response) => {
    const connection = tracked.get("stream" in req ? (req.stream.session ?? req) : req.socket);
    if (connection) guard.track(connection, res as never);
    res.setHeader("access-control-allow-origin", origin);
    res.setHeader("access-control-expose-headers", cors.exposedHeaders.join(", "));
    if (req.method === "OPTIONS") {
      res.setHeader("access-control-allow-methods", [...cors.allowedMethods, "PUT"].join(", ")); // PUT: raw file uploads
      res.setHeader("access-control-allow-headers", [...cors.allowedHeaders, "Authorization"].join(", "));
      res.setHeader("access-control-max-age", "7200");
      res.writeHead(204);
      res.end();
      return;
    }
    adapter(req, res as never);
  };
  const http1 = createHttp1(handle);
  const http2 = createHttp2(handle);
  const guard = new ConnectionGuard(options.connections);
  const tracked = new WeakMap<object, import("./connection-guard.js").TrackedConnection>();
  // The session is created synchronously while the connection is handed over (below).
  let arriving: import("./connection-guard.js").TrackedConnection | undefined;
  http2.on("session", (session) => {
    if (!arriving) return;
    guard.attachSession(arriving, session);
    tracked.set(session, arriving);
  });
  const server = net.createServer({ noDelay: true }, (socket) => {
    const connection = guard.accept(socket);
    tracked.set(socket, connection);
    socket.on("error", () => {}); // a reset before the handover is routine, not a crash
    socket.once("readable", () => {
      const head = socket.read(HTTP2_PREFACE.length) ?? socket.read();
      if (head === null) return;
      socket.unshift(head);
      if (head.toString("latin1").startsWith(HTTP2_PREFACE)) {
        arriving = connection;
        try {
          http2.emit("connection", socket);
        } finally {
          arriving = undefined;
        }
      } else http1.emit("connection", socket);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address() as import("node:net").AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        guard.destroyAll();
        http1.close();
        http2.close();
        server.close(() => resolve());
      }),
  };
}

/**
 * Connect reports a request body that does not decode as protobuf as `internal` (its binary
 * parser's failure); for a server that is the caller's bad input. The handler aborts the
 * request's context with the error just before writing it in every protocol, so the code is
 * corrected there.
 */
function reclassifyUndecodableRequests(
  context: HandlerContext,
  ConnectErrorClass: typeof import("@connectrpc/connect").ConnectError,
  CodeEnum: typeof import("@connectrpc/connect").Code,
): void {
  context.signal.addEventListener(
    "abort",
    () => {
      const reason: unknown = context.signal.reason;
      if (
        reason instanceof ConnectErrorClass &&
        reason.code === CodeEnum.Internal &&
        reason.rawMessage.startsWith("parse binary: ")
      ) {
        (reason as { code: number }).code = CodeEnum.InvalidArgument;
      }
    },
    { once: true },
  );
}

/**
 * An HTTP/1.1 answer sent before its request's body was all received (a refused token, a
 * message over the limit) closes the connection, so the rest is never read: Node would
 * otherwise read and discard it, however large. (HTTP/2 needs nothing: an unread stream's
 * flow-control window stays closed.)
 */
function closeIfBodyUnread(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: import("node:http").ServerResponse, ...args: unknown[]) {
    if (!req.complete && !this.headersSent) this.setHeader("connection", "close");
    return (writeHead as (...a: unknown[]) => import("node:http").ServerResponse).apply(this, args);
  } as typeof writeHead;
}
