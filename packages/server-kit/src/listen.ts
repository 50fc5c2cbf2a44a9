/**
 * Serves Connect routes on one port for every protocol: Connect over HTTP/1.1 and HTTP/2,
 * and gRPC. Node's cleartext HTTP/2 server refuses HTTP/1.1 clients, so a plain TCP server
 * peeks at each connection's first bytes and hands the socket to the matching server.
 * Node-only (its own entry point, "@sbx/server-kit/listen"), so the browser-safe parts of
 * this package never pull in node: modules.
 */
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";

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
  // Compression off: streamed output would spend more CPU in zlib than it saves on the wire.
  const router = createConnectRouter({ interceptors, acceptCompression: [] });
  routes(router);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const onHandlerError =
    options.onHandlerError ??
    ((method: string, error: unknown) => console.error(`sbx: handler for ${method} failed`, error));
  // Like connect-node's adapter, except that a client leaving mid-response (a dropped
  // connection, a cancelled read) is routine for streaming reads and is not logged as a failure.
  const plainRoutes = options.plainRoutes ?? [];
  const adapter = (req: NodeRequest, res: NodeResponse) => {
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
      (res as import("node:http").ServerResponse).writeHead(404).end();
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
  const sockets = new Set<import("node:net").Socket>();
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.once("readable", () => {
      const head = socket.read(HTTP2_PREFACE.length) ?? socket.read();
      if (head === null) return;
      socket.unshift(head);
      const target = head.toString("latin1").startsWith(HTTP2_PREFACE) ? http2 : http1;
      target.emit("connection", socket);
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
        for (const socket of sockets) socket.destroy();
        http1.close();
        http2.close();
        server.close(() => resolve());
      }),
  };
}
