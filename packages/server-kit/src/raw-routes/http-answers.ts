/**
 * What the raw routes share (raw output, files and images): plain HTTP bodies beside Connect, for
 * bytes in bulk. Every answer carries `x-sbx-raw: <route>`, so a client can tell "no such
 * file" from "no such route" (an older server, or the fake) and stop asking the latter.
 * Errors are Connect's JSON error format (details included) with Connect's HTTP status.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { RAW_HEADER, RAW_STATUS, type RawRoute } from "@sbx/proto";
import type { PlainRoute } from "../listen.js";

export type RawRequest = IncomingMessage | Http2ServerRequest;
export type RawResponse = ServerResponse | Http2ServerResponse;

/** Marks the answer as the raw route's (and lets browsers read that header). */
export function markRaw(res: RawResponse, route: RawRoute): void {
  res.setHeader(RAW_HEADER, route);
  const exposed = res.getHeader("access-control-expose-headers");
  res.setHeader("access-control-expose-headers", exposed ? `${exposed}, ${RAW_HEADER}` : RAW_HEADER);
}

/** Answers with `error` as a Connect JSON error (status from its code unless given). */
export function failRaw(res: RawResponse, error: unknown, status?: number): void {
  const ce = ConnectError.from(error);
  if (res.headersSent) {
    res.destroy(); // mid-body: the client sees the body cut, never a clean end
    return;
  }
  (res as ServerResponse).writeHead(status ?? codeToHttpStatus(ce.code), { "content-type": "application/json" });
  res.end(errorToJsonBytes(ce, {}));
}

/** Whether a request's Authorization header is accepted (the listener's own check). */
export type Authorize = (authorization: string | null | undefined) => boolean;

/** What a raw route that takes only requests with the bearer token does (raw files, raw images). */
export interface TokenRouteServer {
  /** Serves a request whose token was accepted; `signal` aborts when the client goes away. */
  serve(req: RawRequest, res: RawResponse, url: URL, signal: AbortSignal): Promise<void>;
  /** The HTTP status for what `serve` threw (by default, its Connect code's). */
  statusOf?(error: unknown): number | undefined;
}

/**
 * The raw route `route` at `prefix`: every answer marked, a request without the token answered
 * Unauthenticated before any of its body is read, the others served by `server`, and what it
 * throws answered as a Connect JSON error.
 */
export function tokenRoute(
  route: RawRoute,
  prefix: string,
  authorize: Authorize,
  server: TokenRouteServer,
): PlainRoute {
  return {
    prefix,
    async handle(req, res) {
      markRaw(res, route);
      const signal = clientSignal(res); // first: a client gone during the hook is still seen
      try {
        if (!authorize(req.headers.authorization))
          throw new ConnectError("missing or wrong bearer token", Code.Unauthenticated);
        await server.serve(req, res, new URL(req.url ?? "/", "http://sbx"), signal);
      } catch (error) {
        failRaw(res, error, server.statusOf?.(error));
      }
    },
  };
}

/** Starts a 200 answer with `headers`. */
export function startBody(res: RawResponse, headers: Record<string, string>): void {
  (res as ServerResponse).writeHead(RAW_STATUS.ok, headers);
}

/** Writes `data`, waiting for the socket to drain when its buffer is full. */
export function writeBody(res: RawResponse, data: Uint8Array, signal: AbortSignal): Promise<void> | undefined {
  if ((res as ServerResponse).write(data)) return undefined;
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      res.off("drain", done);
      signal.removeEventListener("abort", done);
      if (signal.aborted) reject(signal.reason);
      else resolve();
    };
    res.on("drain", done);
    signal.addEventListener("abort", done);
  });
}

/**
 * Writes `data` and resolves once the response has handed it to the socket (so its memory
 * may be reused); rejects when the client goes away first.
 */
export function writeBodyFlushed(res: RawResponse, data: Uint8Array, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const gone = () => reject(signal.reason);
    if (signal.aborted) return gone();
    signal.addEventListener("abort", gone, { once: true });
    (res as ServerResponse).write(data, (error) => {
      signal.removeEventListener("abort", gone);
      if (error) reject(error);
      else resolve();
    });
  });
}

/** Aborts when the client goes away (at once if it already has). */
export function clientSignal(res: RawResponse): AbortSignal {
  const abort = new AbortController();
  const gone = () => abort.abort(new ConnectError("client went away"));
  res.on("close", gone);
  const stream = (res as Http2ServerResponse).stream as { destroyed?: boolean } | undefined;
  if ((res as ServerResponse).closed || (res as ServerResponse).destroyed || stream?.destroyed) gone();
  return abort.signal;
}

/** The RPC a raw request stands for (the name fault injection and call records use). */
export type RawMethod = "ReadOutput" | "ReadFile" | "WriteFile" | "ImportImage";

/** What a test double (the fake, while faults are scripted) does with one raw request. */
export interface RawCallPlan {
  /** Send the client to the RPC for this call: answered 503, marked, so it asks Connect instead. */
  readonly decline?: boolean;
  /** Answer as a server without this route would (404, unmarked): the client stops asking. */
  readonly unserved?: boolean;
  /** Answer with this error (a failure the fake injects into a route with no RPC to fall back to). */
  readonly fail?: unknown;
}

/** Asked first for every request a raw route serves (after its token check). */
export type RawCallHook = (method: RawMethod) => Promise<RawCallPlan | undefined>;

/** Answers as a server without raw routes: 404 and no marker. */
export function unservedRaw(res: RawResponse): void {
  res.removeHeader(RAW_HEADER);
  (res as ServerResponse).writeHead(404, { "content-type": "text/plain" });
  res.end("no such route\n");
}

/** Answers a declined raw request: the client falls back to the RPC for this call. */
export function declineRaw(res: RawResponse, method: RawMethod): void {
  failRaw(res, new ConnectError(`${method} is served through Connect for now`, Code.Unavailable), 503);
}
