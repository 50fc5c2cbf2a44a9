/**
 * Serves Connect routes on one port for every protocol: Connect over HTTP/1.1 and HTTP/2,
 * and gRPC. Node's cleartext HTTP/2 server refuses HTTP/1.1 clients, so a plain TCP server
 * peeks at each connection's first bytes and hands the socket to the matching server.
 * Node-only (its own entry point, "@sbx/server-kit/listen"), so the browser-safe parts of
 * this package never pull in node: modules.
 */
import type { ConnectRouter, HandlerContext, Interceptor } from "@connectrpc/connect";
import { ConnectionGuard, type ConnectionLimits } from "./connection-guard.js";
import { HostedBudget } from "./hosted-budget.js";
import { READ_MAX_BYTES } from "./request-limits.js";

export { type ConnectionLimits, DEFAULT_MAX_CONNECTIONS } from "./connection-guard.js";
export type { HostedLimits } from "./hosted-budget.js";

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
  /**
   * WebSocket (HTTP/1.1 upgrade) routes: an upgrade whose path starts with a route's `prefix`
   * goes to its `handle`, which checks its own token and owns the socket from then on. Only
   * once the route calls `accepted` (its token checked out) does the connection count as a
   * request in flight until it closes; a refused one stays under the guard's caps and
   * timeouts for silent connections. Other upgrades get a 404 and are closed.
   */
  readonly upgradeRoutes?: readonly UpgradeRoute[];
  /**
   * Requests for host names that are not the API's (a tunnel domain's sandbox hosts): each
   * request and upgrade is shown to the router first, by its Host (HTTP/1.1) or :authority
   * (HTTP/2); one it takes never reaches the API (no CORS headers, no API routes). Those it lets
   * through have a budget of their own (`connections.hosted`, see HostedLimits).
   */
  readonly hostRouter?: HostRouter;
  /** Largest request message an RPC reads (default READ_MAX_BYTES); a route may set its own (see serveWithLimits). */
  readonly readMaxBytes?: number;
  /** Timeouts and caps for connections, and the hosted requests' budget (`hosted`). */
  readonly connections?: ConnectionLimits;
}

type NodeRequest = import("node:http").IncomingMessage | import("node:http2").Http2ServerRequest;
type NodeResponse = import("node:http").ServerResponse | import("node:http2").Http2ServerResponse;

/** A non-Connect route: requests whose path starts with `prefix` go to `handle`. */
export interface PlainRoute {
  readonly prefix: string;
  handle(req: NodeRequest, res: NodeResponse): Promise<void>;
}

/** A WebSocket route: HTTP/1.1 upgrades whose path starts with `prefix` (node:http's "upgrade" event). */
export interface UpgradeRoute {
  readonly prefix: string;
  handle(
    req: import("node:http").IncomingMessage,
    socket: import("node:stream").Duplex,
    head: Buffer,
    accepted: () => void,
  ): void;
}

/** Routes requests by host name (see ListenOptions.hostRouter). */
export interface HostRouter {
  /** The handler for a request (or upgrade) to a host the router serves, or undefined: the API's. */
  route(req: NodeRequest): HostRoute | undefined;
}

/** What serves one request to a routed host name. */
export interface HostRoute {
  /** An HTTP/1.1 or HTTP/2 request; the route asks `door` to let it through (else it counts as refused). */
  request(req: NodeRequest, res: NodeResponse, door: HostedDoor): void;
  /** An HTTP/1.1 upgrade; the route owns the socket and asks `door` to let it through. */
  upgrade(
    req: import("node:http").IncomingMessage,
    socket: import("node:stream").Duplex,
    head: Buffer,
    door: HostedDoor,
  ): void;
}

/**
 * How a host route lets a request through (see HostedLimits): one it does not let through counts
 * as refused (ConnectionGuard), and unlike the API's refusals does not close its connection (a
 * proxy in front carries every client's requests over its own few connections).
 */
export interface HostedDoor {
  /**
   * Lets the request through to `target` (a sandbox's port, say): in flight until answered (an
   * upgrade: until its socket closes), holding a place in the hosted budget, and with a
   * deadline for its body. False when the budget has no place for it: the route answers 503.
   */
  admit(target: string): boolean;
}

/** Ends a refused upgrade's socket after its answer, and for good a moment later whatever the client does. */
export function closeRefusedUpgrade(socket: import("node:stream").Duplex, answer: string): void {
  socket.end(answer);
  setTimeout(() => socket.destroy(), REFUSED_UPGRADE_GRACE_MS).unref();
}

const REFUSED_UPGRADE_GRACE_MS = 1000;

export interface Listener {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const HTTP2_PREFACE = "PRI * HTTP/2.0";
export const MAX_CONCURRENT_STREAMS = 1000;
const MAX_SESSION_MEMORY_MIB = 10;

/**
 * How the front door settled a request (set once: the first call wins): accepted ones count as
 * in flight until answered; a refused one's connection is closed after its answer.
 */
interface Verdict {
  accepted(): void;
  refused(): void;
}

export async function listenConnect(
  routes: (router: ConnectRouter) => void,
  interceptors: Interceptor[],
  options: ListenOptions = {},
): Promise<Listener> {
  const [
    { createServer: createHttp1 },
    { createServer: createHttp2 },
    net,
    { universalResponseToNodeResponse },
    { Code, ConnectError, cors, createConnectRouter, createContextKey, createContextValues },
    { constants: http2Constants },
    { universalRequestOf },
  ] = await Promise.all([
    import("node:http"),
    import("node:http2"),
    import("node:net"),
    import("@connectrpc/connect-node"),
    import("@connectrpc/connect"),
    import("node:http2"),
    import("./universal-request.js"),
  ]);
  const frontDoorKey = createContextKey<Verdict | undefined>(undefined, { description: "sbx front door" });
  const authorize = options.authorize;
  const settleCall = callSettler(ConnectError, Code);
  // Runs before a request's body is read (Connect's interceptors run after). Only a request it
  // accepts counts as in flight on its connection (see ConnectionGuard).
  const requestGate = (context: HandlerContext) => {
    settleCall(context);
    const verdict = context.values.get(frontDoorKey);
    if (authorize && !authorize(context.requestHeader.get("authorization"))) {
      verdict?.refused();
      throw new ConnectError("missing or wrong bearer token", Code.Unauthenticated);
    }
    verdict?.accepted();
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
  const adapter = (req: NodeRequest, res: NodeResponse, verdict: Verdict) => {
    const path = pathOf(req.url);
    const plain = plainRoutes.find((route) => path.startsWith(route.prefix));
    if (plain) {
      // The route answers a refused request itself; here it only decides what the request counts as.
      const header = req.headers.authorization;
      if (!authorize || authorize(typeof header === "string" ? header : null)) verdict.accepted();
      else verdict.refused();
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
    const request = universalRequestOf(req, res, createContextValues().set(frontDoorKey, verdict));
    if (!request) {
      (res as import("node:http").ServerResponse).writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "invalid_argument", message: "the request has no usable Host header" }));
      return;
    }
    handler(request)
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
  const hostRouter = options.hostRouter;
  const handle = (req: NodeRequest, res: Response) => {
    const connection = tracked.get("stream" in req ? (req.stream.session ?? req) : req.socket);
    const verdict = frontDoorVerdict(req, res as NodeResponse, connection);
    const hosted = hostRouter?.route(req);
    if (hosted) {
      hosted.request(req, res as NodeResponse, hostedDoor(req, res as NodeResponse, verdict, connection));
      return;
    }
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
    adapter(req, res as never, verdict);
  };
  /**
   * What the front door does with each request, whatever its route: an answer sent before the
   * request's body was read closes the rest of it off (HTTP/1.1: the connection; HTTP/2: the
   * stream, or buffered request data would stay held), an answer that makes no progress drops
   * its connection, an accepted request counts as in flight, a refused one closes its connection.
   */
  const frontDoorVerdict = (
    req: NodeRequest,
    res: NodeResponse,
    connection: import("./connection-guard.js").TrackedConnection | undefined,
  ): Verdict => {
    let refused = false;
    if ("stream" in req) {
      const stream = req.stream;
      // A request read to its end has nothing left to close off: its stream closes with the
      // answer's last frame, and an RST_STREAM after it would only cost both sides work.
      const closeRest = () => {
        if (!stream.closed && !stream.destroyed && !stream.readableEnded) stream.close(http2Constants.NGHTTP2_NO_ERROR);
      };
      // An answer with a body ends with trailers (gRPC's status among them), which Node submits
      // from its own listener during this send: the close waits a turn to go after them. One
      // without (a 204, a HEAD) ends with its headers.
      stream.once("wantTrailers", () => {
        if (!stream.readableEnded) setImmediate(closeRest);
      });
      stream.once("finish", () => {
        if (req.method === "HEAD" || res.statusCode === 204 || res.statusCode === 304) closeRest();
      });
      if (connection) guard.watchStream(connection, stream);
    } else closeIfBodyUnread(req, res as import("node:http").ServerResponse, () => refused);
    let decided = false;
    return {
      accepted: () => {
        if (decided) return;
        decided = true;
        if (connection) guard.track(connection, res as never);
      },
      refused: () => {
        if (decided) return;
        decided = true;
        refused = true;
        if (connection && "stream" in req) guard.refusedOnSession(connection);
      },
    };
  };
  /** Lets a hosted request through within the hosted budget, with a deadline for its body. */
  const hostedDoor = (
    req: NodeRequest,
    res: NodeResponse,
    verdict: Verdict,
    connection: import("./connection-guard.js").TrackedConnection | undefined,
  ): HostedDoor => {
    let admitted = false;
    return {
      admit(target) {
        if (admitted) return true;
        if ((res as { destroyed?: boolean }).destroyed) return false;
        const release = hostedBudget.take(connection?.address ?? "", target);
        if (!release) return false;
        admitted = true;
        res.once("finish", release);
        res.once("close", release);
        verdict.accepted();
        endLateBody(req, res, hostedBudget.requestTimeoutMs, http2Constants.NGHTTP2_CANCEL);
        return true;
      },
    };
  };
  const upgradeRoutes = options.upgradeRoutes ?? [];
  const upgradeRouteOf = (req: import("node:http").IncomingMessage) => {
    const path = pathOf(req.url);
    return upgradeRoutes.find((r) => path.startsWith(r.prefix));
  };
  // Only upgrades a route takes leave HTTP (Node ≥ 24.9 asks; older versions send every upgrade
  // to the listener below, which answers those it has no route for with a 404).
  const http1 = createHttp1(
    {
      shouldUpgradeCallback: (req: import("node:http").IncomingMessage) =>
        hostRouter?.route(req) !== undefined || upgradeRouteOf(req) !== undefined,
    } as {},
    handle,
  );
  // An accepted upgrade is in flight until it closes: the idle timeouts leave it alone.
  const acceptUpgrade = (req: import("node:http").IncomingMessage, socket: import("node:stream").Duplex) => {
    const connection = tracked.get(req.socket);
    let counted = false;
    return () => {
      if (counted || !connection || socket.destroyed) return;
      counted = true;
      guard.track(connection, { once: (_event, listener) => socket.once("close", listener) });
    };
  };
  http1.on(
    "upgrade",
    (req: import("node:http").IncomingMessage, socket: import("node:stream").Duplex, head: Buffer) => {
      socket.on("error", () => socket.destroy());
      const hosted = hostRouter?.route(req);
      if (hosted) {
        const accepted = acceptUpgrade(req, socket);
        let admitted = false;
        hosted.upgrade(req, socket, head, {
          admit(target) {
            if (admitted) return true;
            if (socket.destroyed) return false;
            const release = hostedBudget.take(tracked.get(req.socket)?.address ?? "", target);
            if (!release) return false;
            admitted = true;
            socket.once("close", release);
            accepted();
            return true;
          },
        });
        return;
      }
      const route = upgradeRouteOf(req);
      if (!route) {
        const path = pathOf(req.url);
        const body = JSON.stringify({
          code: "unimplemented",
          message: `no WebSocket route ${path} on this sbx server`,
        });
        closeRefusedUpgrade(
          socket,
          `HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        );
        return;
      }
      route.handle(req, socket, head, acceptUpgrade(req, socket));
    },
  );
  // Bounds per session: streams at once (an sbx client holds one per followed output, so not
  // gRPC's usual 100), and nghttp2's memory (Node's default, said here on purpose).
  const http2 = createHttp2(
    { settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS }, maxSessionMemory: MAX_SESSION_MEMORY_MIB },
    handle,
  );
  const guard = new ConnectionGuard(options.connections);
  const hostedBudget = new HostedBudget(options.connections?.hosted ?? {}, guard.maxConnections);
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

/** A request target's path: what comes before its query (no array made, as `split` would, per request). */
function pathOf(url: string | undefined): string {
  if (url === undefined) return "";
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}

/** Ends a call's context without an exception of its own (see callSettler). */
const CALL_ENDED = new DOMException("the call has ended", "AbortError");

/** Where a call's context keeps Connect's own `abort` once the settler has taken its place. */
const CONNECT_ABORT = Symbol("sbx: Connect's abort");

type SettledContext = HandlerContext & { abort?: unknown; [CONNECT_ABORT]?: (reason?: unknown) => void };

/**
 * Connect aborts each call's context when the call ends, failed or not: `abort(error)` just
 * before it writes a failure, then `abort()`, which makes a new DOMException (a stack trace) on
 * every call. Here the end of a call that did not fail takes one shared AbortError instead.
 *
 * And Connect reports a request body that does not decode as protobuf as `internal` (its binary
 * parser's failure); for a server that is the caller's bad input, so its code is corrected as
 * the context is aborted with it, before the error is written (in every protocol). Should a
 * Connect release stop handing the gate its context's `abort`, a listener corrects it instead.
 *
 * Every context gets the same `abort` (Connect calls it as the context's method), not a closure
 * of its own: measured, a closure stored on each context kept about twice as much of every call
 * (its stream, request, response, context) alive through minor GCs, into the old generation.
 */
function callSettler(
  ConnectErrorClass: typeof import("@connectrpc/connect").ConnectError,
  CodeEnum: typeof import("@connectrpc/connect").Code,
): (context: HandlerContext) => void {
  const reclassify = (reason: unknown) => {
    if (
      reason instanceof ConnectErrorClass &&
      reason.code === CodeEnum.Internal &&
      reason.rawMessage.startsWith("parse binary: ")
    ) {
      (reason as { code: number }).code = CodeEnum.InvalidArgument;
    }
  };
  function abortCall(this: SettledContext, reason?: unknown): void {
    const abort = this[CONNECT_ABORT] as (reason?: unknown) => void;
    if (reason === undefined) {
      abort.call(this, CALL_ENDED);
      return;
    }
    reclassify(reason);
    abort.call(this, reason);
  }
  return (context) => {
    const controller = context as SettledContext;
    const abort = controller.abort;
    if (typeof abort === "function") {
      controller[CONNECT_ABORT] = abort as (reason?: unknown) => void;
      controller.abort = abortCall;
      return;
    }
    context.signal.addEventListener("abort", () => reclassify(context.signal.reason), { once: true });
  };
}

/**
 * Ends a hosted request whose body has not all arrived (HTTP/2: been read) within `ms` of its
 * being let through: a 408 when it has no answer yet, then its connection closed (HTTP/2: the
 * stream reset), or at once when the app's answer has begun.
 */
function endLateBody(req: NodeRequest, res: NodeResponse, ms: number, cancel: number): void {
  if (req.complete) return;
  const timer = setTimeout(() => {
    if (req.complete) return;
    const body = "408 Request Timeout: the request's body did not arrive in time\n";
    const headers = { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) };
    if ("stream" in req) {
      const stream = req.stream;
      if (!res.headersSent && !stream.destroyed) {
        (res as import("node:http2").Http2ServerResponse).writeHead(408, headers);
        res.end(body, () => stream.close(cancel));
      } else stream.close(cancel);
      return;
    }
    const socket = req.socket;
    if (res.headersSent) {
      socket.destroy();
      return;
    }
    (res as import("node:http").ServerResponse).writeHead(408, { ...headers, connection: "close" });
    res.end(body, () => socket.destroy());
  }, ms).unref();
  const stop = () => clearTimeout(timer);
  res.once("finish", stop);
  res.once("close", stop);
}

/**
 * An HTTP/1.1 answer sent before its request's body was all received (a refused token, a
 * message over the limit, a CORS preflight) closes the connection, so the rest is never read:
 * Node would otherwise read and discard it, however large. So does a refused request's answer
 * (`refused()`): a client without the token gets nothing more from this connection.
 */
function closeIfBodyUnread(
  req: import("node:http").IncomingMessage,
  res: import("node:http").ServerResponse,
  refused: () => boolean,
): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: import("node:http").ServerResponse, ...args: unknown[]) {
    if (!this.headersSent && (refused() || (!req.complete && announcesBody(req))))
      this.setHeader("connection", "close");
    return (writeHead as (...a: unknown[]) => import("node:http").ServerResponse).apply(this, args);
  } as typeof writeHead;
}

/** True when an HTTP/1.1 request has a body (a request without either header has none). */
function announcesBody(req: import("node:http").IncomingMessage): boolean {
  return req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) !== 0;
}
