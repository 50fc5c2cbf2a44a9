/**
 * The tunnel domain cases' capability (see ConformanceTarget.tunnelDomain): servers of the
 * target's kind started with a tunnel domain, the test apps they serve in sandboxes, and HTTP
 * spoken on the wire, since those cases send what no `fetch` sends (any Host, several Hosts,
 * HTTP/2 `:authority`, bytes a browser would never frame).
 */
import type { Sandbox } from "@sbx/core";
import type { ConnectionLimits } from "@sbx/server-kit/listen";

/**
 * The apps the tunnel domain cases reach in sandboxes, each on the port a case names. Every
 * target runs the same behaviour its own way (the fake as port handlers, the server as
 * programs in the sandbox): `@sbx/test-fixtures`'s port-apps.ts and sandbox-apps.ts.
 */
export type TestAppName =
  /**
   * HTTP/1.1 (keep-alive), any method: a 200 with `Set-Cookie: app=1; Path=/` and the JSON
   * `{ sandboxId, port, method, path, host, user, cookie, authorization, body }` (`path` with its
   * query, `user` the X-Verified-User-Data header, headers it did not get null, the body read
   * by its length or chunked). `GET /h2-settings`: "ok" with an `HTTP2-Settings` header.
   */
  | "http-echo"
  /** WebSockets: a first text message `{ host, user }` (as above), then each message echoed. */
  | "websocket-echo"
  /**
   * Reads one request by the framing its head announces (Content-Length, chunked, or no body),
   * answers the JSON `{ requestLine, headers, body }` (header names in lower case, each with
   * its values), then closes: a body sent without framing would be left for it as a next request.
   */
  | "request-reader"
  /**
   * Holds every request: reads its head, then answers a WebSocket upgrade with its 101, a path
   * starting `/quiet` with nothing, anything else with a 200 and a first chunk; then reads
   * whatever comes and never finishes.
   */
  | "held-requests";

/** A server with a tunnel domain, started for a group of cases, on loopback. */
export interface TunnelDomainServer {
  /** The API's URL (`http://127.0.0.1:<port>`): sandbox names are served on the same port. */
  readonly url: string;
  /** The API's bearer token. */
  readonly token: string;
  /** Starts `app` on `port` in `sandbox` (one of this server's); resolves once it listens. */
  serve(sandbox: Sandbox, port: number, app: TestAppName): Promise<void>;
  /** Stops the server and everything it runs. */
  close(): Promise<void>;
}

export interface TunnelDomainServerOptions {
  /** The tunnel domain as a user gives it (any case, a trailing dot or none). */
  readonly domain: string;
  readonly scheme: "http" | "https";
  /** The front door's limits (the hosted requests' budget among them); defaults otherwise. */
  readonly connections?: ConnectionLimits;
}

/**
 * A capability, not a difference: servers of the target's kind with a tunnel domain, started
 * as a group of cases asks, and a client that speaks HTTP on the wire.
 */
export interface TunnelDomainServers {
  start(options: TunnelDomainServerOptions): Promise<TunnelDomainServer>;
  readonly wire: WireClient;
}

/** An HTTP answer as it came. */
export interface WireAnswer {
  readonly status: number;
  /** By lower-case name; a repeated header (Set-Cookie) as its values. */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  readonly text: string;
}

export interface WireRequest {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  /** The Host header, when it is not the URL's. */
  readonly host?: string;
}

/** A TCP connection that sent its first bytes. */
export interface WireConnection {
  /** The bytes (latin1) that came since the last call, once there are some; "" once it closed. */
  next(): Promise<string>;
  /** All that came, once the other side closed the connection. */
  readonly closed: Promise<string>;
  write(data: string): void;
  /** Ends the connection at once. */
  destroy(): void;
}

/** One HTTP/2 request. */
export interface WireStream {
  /** The answer's head. */
  readonly head: Promise<{ readonly status: number; readonly headers: WireAnswer["headers"] }>;
  /** The whole answer, once its stream ended. */
  readonly answer: Promise<WireAnswer>;
}

export interface WireHttp2Session {
  /**
   * Sends `headers` (pseudo-headers included). Without `body` the request ends with its
   * headers; with one, the body follows in DATA frames (no content-length unless given), and
   * the stream ends after it unless `keepOpen`.
   */
  request(headers: Readonly<Record<string, string>>, body?: string, options?: { keepOpen?: boolean }): WireStream;
  close(): void;
}

/** An open WebSocket. */
export interface WireWebSocket {
  /** The next text message (those that came first are kept for it). */
  next(): Promise<string>;
  send(text: string): void;
  close(): void;
}

/**
 * A capability of the runtime the suite runs in: HTTP spoken on the wire to a server on
 * loopback, every host name resolved to 127.0.0.1 (no DNS). `localAddress` picks the client
 * address (any 127.x.y.z), for caps per address.
 */
export interface WireClient {
  /** An HTTP/1.1 request on a connection of its own. */
  request(url: string, init?: WireRequest): Promise<WireAnswer>;
  /** Opens a TCP connection to `port` on 127.0.0.1 and sends `data` (latin1). */
  connect(port: number, data: string, options?: { localAddress?: string }): WireConnection;
  /** An HTTP/2 session (prior knowledge) to `url`. */
  http2(url: string): WireHttp2Session;
  /** Opens a WebSocket; rejects with an Error saying `status <code>` when the server answers otherwise. */
  websocket(
    url: string,
    options?: { headers?: Readonly<Record<string, string>>; origin?: string; localAddress?: string },
  ): Promise<WireWebSocket>;
}
