/**
 * The front door's host routing under a tunnel domain (Node; the names are tunnel-domain.ts's):
 * a request or upgrade whose host is `<port>-<sandbox id>[-auth].<domain>` goes to that port
 * through the gateway, as the per-port listeners' requests do (an open tunnel with no token
 * asked for, or the token gateway), and never to the API. Every other host is the API's.
 *
 * - An open tunnel's name for a sandbox that is not running or a port it does not expose: 404,
 *   one answer for every reason (tunnel-host-check.ts). A gateway's name answers as the gateway
 *   does (401 without a token) whether or not its sandbox exists; only once a token verified
 *   does a sandbox that is not running make it a 404.
 * - A name shaped like a sandbox's that is not well formed, several Host headers naming one
 *   (with an absolute request target too), an HTTP/2 CONNECT: 400.
 * - Requests let through hold a place in the front door's hosted budget (listen.ts's
 *   HostedDoor: caps on all of them, per client address and per sandbox port, a deadline for
 *   a body) and count as in flight (ConnectionGuard); past a cap, 503. Refused ones (those, and
 *   the gateway's 401s and 403s) do not, so a connection with nothing else stays under the
 *   timeouts and caps for silent ones. Unlike the API's refusals they do not close it: a TLS
 *   proxy in front carries every client's requests over its own few connections.
 * - HTTP/2 requests are passed on to the app as HTTP/1.1 (gateway-auth.ts turns :authority into
 *   Host); the app's answer loses what HTTP/2 cannot carry.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { type Http2ServerRequest, type Http2ServerResponse, constants as http2 } from "node:http2";
import type { Engine } from "../engine/engine.js";
import { tunnelHostOpen } from "../engine/tunnel-host-check.js";
import { closeRefusedUpgrade, type HostedDoor, type HostRoute, type HostRouter } from "../listen.js";
import { type GatewayRoute, type IngressDialer, IngressGateway } from "./gateway.js";
import type { IngressTokens } from "./tokens.js";
import type { TunnelDomain, TunnelHostMatch } from "./tunnel-domain.js";

export interface TunnelHostRouterOptions {
  readonly domain: TunnelDomain;
  readonly engine: Engine;
  readonly dialer: IngressDialer;
  readonly tokens: IngressTokens;
  /** Told of a failure that is neither the client's nor the app's (a dialer bug). */
  readonly onError?: (error: unknown) => void;
}

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;

const NOT_FOUND = "404 Not Found: no such sandbox port here\n";
const BUSY = "503 Service Unavailable: too many requests to sandbox ports at once\n";

/** Response headers HTTP/2 refuses (the gateway already drops the other hop-by-hop ones). */
const NOT_IN_HTTP2 = ["http2-settings"];

/** The router for `listenConnect`'s `hostRouter`. */
export function tunnelHostRouter(options: TunnelHostRouterOptions): HostRouter {
  const { domain, engine, tokens } = options;
  const gateway = new IngressGateway({
    dialer: options.dialer,
    ...(options.onError ? { onError: options.onError } : {}),
  });
  const report = (error: unknown) => options.onError?.(error);

  /** The gateway's route for `match`: what it checks lets a request in only if the sandbox runs and the budget has room. */
  const routeOf = (match: Extract<TunnelHostMatch, { kind: "sandbox" }>, door: HostedDoor): GatewayRoute => ({
    sandboxId: match.sandboxId,
    port: match.port,
    tokens: match.route === "gateway" ? tokens : undefined,
    https: domain.scheme === "https",
    admit: () => {
      if (!tunnelHostOpen(engine, match.route, match.sandboxId, match.port)) return { status: 404, body: NOT_FOUND };
      if (!door.admit(`${match.sandboxId}:${match.port}`)) return { status: 503, body: BUSY };
      return undefined;
    },
  });
  /** An open tunnel's name leads nowhere before anything else is looked at (it asks for no token). */
  const nowhere = (match: Extract<TunnelHostMatch, { kind: "sandbox" }>) =>
    match.route === "tunnel" && !tunnelHostOpen(engine, match.route, match.sandboxId, match.port);

  return {
    route(req): HostRoute | undefined {
      const match = matchRequest(domain, req);
      if (match.kind === "elsewhere") return undefined;
      return {
        request(req, res, door) {
          const refuse = (status: number, body: string) => answer(res, status, body);
          if (match.kind === "malformed") return refuse(400, `400 Bad Request: ${match.reason}\n`);
          if (nowhere(match)) return refuse(404, NOT_FOUND);
          if ("stream" in req) {
            if (req.method === "CONNECT")
              return refuse(400, "400 Bad Request: CONNECT is not passed on to sandboxes\n");
            asHttp2Answer(res as Http2ServerResponse);
          }
          const route = routeOf(match, door);
          gateway.request(route, req as IncomingMessage, res as ServerResponse).catch((error: unknown) => {
            report(error);
            if (!res.headersSent) answer(res, 502, "502 Bad Gateway\n");
            else res.destroy();
          });
        },
        upgrade(req, socket, head, door) {
          const refuse = (status: string, body: string) =>
            closeRefusedUpgrade(
              socket,
              `HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
            );
          if (match.kind === "malformed") return refuse("400 Bad Request", `400 Bad Request: ${match.reason}\n`);
          if (nowhere(match)) return refuse("404 Not Found", NOT_FOUND);
          const route = routeOf(match, door);
          gateway.upgrade(route, req, socket, head).catch((error: unknown) => {
            socket.destroy();
            report(error);
          });
        },
      };
    },
  };
}

/**
 * What a request's host names: HTTP/2's :authority (else its Host), HTTP/1.1's request target
 * when it is absolute (RFC 9112 §3.2.2: then Host is ignored), else its Host header. Several Host
 * headers where one (or the target) names a sandbox are malformed (RFC 9112 §3.2: a 400), since
 * a proxy in front may have read another one than Node keeps. (The gateway tells the app the
 * same host: gateway-auth.ts.)
 */
function matchRequest(domain: TunnelDomain, req: NodeRequest): TunnelHostMatch {
  if ("stream" in req) {
    const authority = req.headers[":authority"] ?? req.headers.host;
    return typeof authority === "string" ? domain.match(authority) : { kind: "elsewhere" };
  }
  const hosts: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === "host") hosts.push(raw[i + 1] ?? "");
  const target = req.url ?? "";
  let match: TunnelHostMatch;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    try {
      match = domain.match(new URL(target).host);
    } catch {
      match = { kind: "elsewhere" };
    }
  } else match = hosts.length === 0 ? { kind: "elsewhere" } : domain.match(hosts[0] as string);
  const named = [match, ...hosts.map((host) => domain.match(host))];
  if (hosts.length > 1 && named.some((m) => m.kind !== "elsewhere")) {
    return { kind: "malformed", reason: "more than one Host header" };
  }
  return match;
}

/**
 * Makes the gateway's HTTP/1.1-shaped answers fit an HTTP/2 response: no status message (HTTP/2
 * has none, and Node warns about one), no headers HTTP/2 forbids; an answer HTTP/2 cannot carry
 * at all (a 101, a 1xx) ends the stream instead of failing later.
 */
function asHttp2Answer(res: Http2ServerResponse): void {
  const writeHead = res.writeHead.bind(res) as (status: number, headers?: Record<string, unknown>) => unknown;
  res.writeHead = ((status: number, message?: unknown, headers?: unknown) => {
    const given = (typeof message === "string" ? headers : message) as Record<string, unknown> | undefined;
    const kept: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(given ?? {})) {
      if (!NOT_IN_HTTP2.includes(name.toLowerCase())) kept[name] = value;
    }
    try {
      writeHead(status, kept);
    } catch {
      res.stream.close(http2.NGHTTP2_INTERNAL_ERROR);
    }
    return res;
  }) as typeof res.writeHead;
}

function answer(res: NodeResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  (res as ServerResponse).writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}
