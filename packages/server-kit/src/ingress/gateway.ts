/**
 * The gateway in front of sandbox ports (Node): node:http handlers that check a request
 * (gateway-auth.ts: tokens, cookies, the verified user header) and proxy it to the port
 * through a dialer — the seam to how bytes reach a sandbox's port: the fake's port registry,
 * or the server's connection to the sandbox's address. HTTP/1.1 requests are proxied one
 * upstream connection each (the client's own connection to the gateway stays alive between
 * requests); an upgrade (WebSocket) is passed on as it is and then piped both ways, so the
 * app's 101 and everything after it reach the client untouched.
 *
 * A request's framing is the gateway's, not the client's: its body goes on by its
 * Content-Length, or chunked when it has none (a chunked HTTP/1.1 body, an HTTP/2 body of no
 * stated length), so no body can read as a request of its own to the app; a request whose
 * framing is ambiguous is refused. Headers the client names in Connection are dropped, but never
 * Content-Length or Host, and the verified user header is set after.
 */
import { request as httpRequest, type IncomingMessage, type ServerResponse, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { closeRefusedUpgrade } from "../listen.js";
import { authorizeRequest, type GatewayTarget, type HeaderRecord, underscoredFramingField } from "./gateway-auth.js";
import type { IngressTokens } from "./tokens.js";

/** How the gateway reaches a sandbox's port: a byte stream connected to it. */
export interface IngressDialer {
  /**
   * A connection to `port` of `sandboxId`; IngressDialError when it cannot be had. `signal`
   * aborts the dial (a timeout, the client gone): it rejects and holds nothing.
   */
  dial(sandboxId: string, port: number, signal?: AbortSignal): Promise<Duplex>;
}

/**
 * Why a port cannot be reached: nothing listens there ("refused"), or the target has no way
 * to reach sandbox ports yet ("unsupported"). Either is a 502 with the message.
 */
export class IngressDialError extends Error {
  constructor(
    message: string,
    readonly reason: "refused" | "unsupported",
  ) {
    super(message);
    this.name = "IngressDialError";
  }
}

export interface GatewayOptions {
  readonly dialer: IngressDialer;
  /** Told of a failure that is not the app's nor the client's (a dialer bug). */
  readonly onError?: (error: unknown) => void;
}

/** Where a listener sends its requests: a port of a sandbox, behind tokens or open (a tunnel). */
export interface GatewayRoute extends GatewayTarget {
  /** undefined: an open tunnel, no token asked for. */
  readonly tokens: IngressTokens | undefined;
  /**
   * Asked once a request was checked and is to be let through (passed on, or redirected with its
   * cookie): undefined lets it through, a refusal is answered instead (the front door's budget,
   * a sandbox that is gone). Unset: every request that checks out is let through.
   */
  readonly admit?: () => GatewayRefusal | undefined;
}

/** A request the gateway answers itself. */
export interface GatewayRefusal {
  readonly status: number;
  readonly body: string;
}

/** Headers that belong to one connection, not to the request (RFC 9110 §7.6.1). */
const HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];
/** Never dropped because Connection names them: the request's framing and its host. */
const NOT_HOP_BY_HOP = new Set(["content-length", "host"]);

export class IngressGateway {
  constructor(readonly options: GatewayOptions) {}

  /** One HTTP request (node:http's "request" event). */
  async request(route: GatewayRoute, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const underscored = underscoredFramingField(req.headers as HeaderRecord);
    if (underscored !== undefined) {
      res.shouldKeepAlive = false;
      return answer(res, 400, `400 Bad Request: a header field name spelt with '_': ${underscored}\n`);
    }
    const framing = bodyFraming(req);
    if ("status" in framing) return answer(res, framing.status, framing.body);
    const decision = await authorizeRequest(headOf(req), route, route.tokens);
    if (decision.kind === "reject") return answer(res, decision.status, decision.body);
    const refusal = route.admit?.();
    if (refusal) return answer(res, refusal.status, refusal.body);
    if (decision.kind === "redirect") {
      res.writeHead(302, { location: decision.location, "set-cookie": decision.setCookie, "content-length": "0" });
      res.end();
      req.resume();
      return;
    }
    const upstream = await this.#dial(route, res);
    if (!upstream) return;
    const headers: HeaderRecord = { ...decision.headers, connection: "close" };
    if (framing.chunked) headers["transfer-encoding"] = "chunked";
    let proxied: ReturnType<typeof httpRequest>;
    try {
      proxied = httpRequest({
        method: req.method,
        path: decision.url,
        headers,
        createConnection: () => upstream,
        // (An app's big Content-Security-Policy or Set-Cookie lines: the relay allows as much.)
        maxHeaderSize: MAX_RESPONSE_HEAD,
      });
    } catch (error) {
      // (Node refuses a header it cannot send; the checks above should leave none.)
      upstream.destroy();
      this.options.onError?.(error);
      return answer(res, 502, `502 Bad Gateway: the request cannot be passed on\n`);
    }
    proxied.on("response", (reply) => {
      if (res.headersSent || res.destroyed) {
        reply.destroy(); // (answered meanwhile: the request's body came too late)
        return;
      }
      const out: HeaderRecord = withoutHopByHop(reply.headers);
      res.writeHead(reply.statusCode ?? 502, reply.statusMessage, out as Record<string, string | string[]>);
      reply.pipe(res);
      reply.on("error", () => res.destroy());
    });
    proxied.on("error", (error) => {
      if (!res.headersSent)
        answer(res, 502, `502 Bad Gateway: port ${route.port} of sandbox ${route.sandboxId}: ${error.message}\n`);
      else res.destroy();
    });
    res.on("close", () => {
      if (!res.writableFinished) proxied.destroy();
      upstream.destroy();
    });
    req.pipe(proxied);
  }

  /** An upgrade request (node:http's "upgrade" event): checked, passed on, then piped both ways. */
  async upgrade(route: GatewayRoute, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on("error", () => socket.destroy());
    const underscored = underscoredFramingField(req.headers as HeaderRecord);
    if (underscored !== undefined) {
      return refuseUpgrade(socket, 400, `400 Bad Request: a header field name spelt with '_': ${underscored}\n`);
    }
    const decision = await authorizeRequest({ ...headOf(req), upgrade: true }, route, route.tokens);
    if (decision.kind !== "forward") {
      // (No redirect on an upgrade.)
      const [status, body] =
        decision.kind === "reject" ? [decision.status, decision.body] : [401, "401 Unauthorized\n"];
      return refuseUpgrade(socket, status, body);
    }
    const refusal = route.admit?.();
    if (refusal) return refuseUpgrade(socket, refusal.status, refusal.body);
    let upstream: Duplex;
    try {
      upstream = await this.options.dialer.dial(route.sandboxId, route.port);
    } catch (error) {
      return refuseUpgrade(socket, 502, `${dialFailure(error, route, this.options.onError)}\n`);
    }
    // The upgrade is the one thing the request's Connection says (the rest were dropped).
    const headers: HeaderRecord = { ...decision.headers, connection: "upgrade", upgrade: req.headers.upgrade };
    const lines = [`${req.method} ${decision.url} HTTP/1.1`];
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined || /[\r\n]/.test(String(value))) continue;
      for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
    }
    upstream.on("error", () => socket.destroy());
    socket.on("close", () => upstream.destroy());
    upstream.on("close", () => socket.destroy());
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    // Nothing more of the client's goes to the app before the app has switched protocols: an
    // app that answers the upgrade as plain HTTP would otherwise take the client's next
    // requests unchecked (a forged X-Verified-User-Data among them).
    socket.pause();
    const switched = await appSwitched(upstream);
    if (switched === undefined) {
      socket.destroy();
      return;
    }
    socket.write(switched.received);
    if (switched.status === 101) {
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
      socket.resume();
      return;
    }
    // Any other answer is the last on this connection: the rest of it, then the end.
    upstream.end();
    upstream.pipe(socket);
  }

  async #dial(route: GatewayRoute, res: ServerResponse): Promise<Duplex | undefined> {
    try {
      return await this.options.dialer.dial(route.sandboxId, route.port);
    } catch (error) {
      answer(res, 502, `502 Bad Gateway: ${dialFailure(error, route, this.options.onError)}\n`);
      return undefined;
    }
  }
}

/** Most bytes of an app's answer head (as the relay, agent/relay_http.go's maxResponseHead). */
const MAX_RESPONSE_HEAD = 256 * 1024;
/** Most bytes of the app's answer head to an upgrade read before giving up on it. */
const MAX_UPGRADE_ANSWER_HEAD = MAX_RESPONSE_HEAD;

/**
 * Reads the app's answer to an upgrade up to the end of its head: its status, and every byte
 * read so far (head and what followed it), for the client. Undefined when the app closed or
 * sent no head within the bound.
 */
function appSwitched(upstream: Duplex): Promise<{ status: number; received: Buffer } | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const done = (result: { status: number; received: Buffer } | undefined) => {
      upstream.off("data", onData);
      upstream.off("end", onEnd);
      upstream.off("close", onEnd);
      upstream.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      const received = Buffer.concat(chunks, length);
      const end = received.indexOf("\r\n\r\n");
      if (end === -1) {
        if (length > MAX_UPGRADE_ANSWER_HEAD) done(undefined);
        return;
      }
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(received.subarray(0, end).toString("latin1"))?.[1];
      done(status === undefined ? undefined : { status: Number(status), received });
    };
    const onEnd = () => done(undefined);
    upstream.on("data", onData);
    upstream.on("end", onEnd);
    upstream.on("close", onEnd);
  });
}

function dialFailure(error: unknown, route: GatewayRoute, onError: ((error: unknown) => void) | undefined): string {
  if (error instanceof IngressDialError) return error.message;
  onError?.(error);
  return `port ${route.port} of sandbox ${route.sandboxId} cannot be reached`;
}

/** The request as the gateway checks it: its headers without those of its connection. */
function headOf(req: IncomingMessage) {
  return {
    method: req.method ?? "GET",
    url: req.url ?? "/",
    headers: withoutHopByHop(req.headers as HeaderRecord),
    secure: Boolean((req.socket as { encrypted?: boolean }).encrypted),
  };
}

/**
 * How a request's body goes on (RFC 9112 §6): by its Content-Length, chunked (a chunked HTTP/1.1
 * body; an HTTP/2 body with no stated length), or none; or the refusal of a request whose
 * framing is ambiguous: a length and a coding both, a length that is not one number, a coding
 * other than chunked.
 */
function bodyFraming(req: IncomingMessage): { readonly chunked: boolean } | GatewayRefusal {
  const length = req.headers["content-length"];
  const coding = req.headers["transfer-encoding"];
  const bad = (why: string) => ({ status: 400, body: `400 Bad Request: ${why}\n` });
  if (length !== undefined && coding !== undefined) return bad("both Content-Length and Transfer-Encoding");
  if (length !== undefined && !/^[0-9]+$/.test(length)) return bad("Content-Length is not a number");
  if (coding !== undefined) {
    if (coding.trim().toLowerCase() === "chunked") return { chunked: true };
    return { status: 501, body: "501 Not Implemented: a transfer coding other than chunked\n" };
  }
  const stream = (req as { stream?: { endAfterHeaders: boolean } }).stream;
  return { chunked: length === undefined && stream !== undefined && !stream.endAfterHeaders };
}

function refuseUpgrade(socket: Duplex, status: number, body: string): void {
  closeRefusedUpgrade(
    socket,
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function withoutHopByHop(headers: HeaderRecord): HeaderRecord {
  const named = new Set(HOP_BY_HOP);
  const connection = headers.connection;
  for (const line of Array.isArray(connection) ? connection : connection ? [connection] : []) {
    for (const name of line.split(",")) named.add(name.trim().toLowerCase());
  }
  for (const name of NOT_HOP_BY_HOP) named.delete(name);
  const out: HeaderRecord = {};
  for (const [name, value] of Object.entries(headers)) if (!named.has(name) && value !== undefined) out[name] = value;
  return out;
}

function answer(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
