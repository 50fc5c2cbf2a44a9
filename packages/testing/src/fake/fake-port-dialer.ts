/**
 * The fake's dialer (server-kit's `IngressDialer`, Node; loaded by `listen()`): a connection
 * to a sandbox port is one end of an in-memory stream pair whose other end goes to what the
 * port registry holds — an `onPortConnection` handler as web byte streams, or an `onPort`
 * handler behind an HTTP/1.1 server of its own (never listening) that turns each request
 * into fetch's `Request` and the handler's `Response` back. Nothing listening: refused.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { type Duplex, duplexPair, Readable } from "node:stream";
import { streamSocketStreams } from "@sbx/core/adapter";
import { IngressDialError, type IngressDialer } from "@sbx/server-kit/ingress";
import type { PortContext, PortHandler, PortRegistry } from "./ports.js";

export class FakePortDialer implements IngressDialer {
  constructor(readonly ports: PortRegistry) {}

  async dial(sandboxId: string, port: number, signal?: AbortSignal): Promise<Duplex> {
    if (signal?.aborted)
      throw new IngressDialError(`the dial to port ${port} of sandbox ${sandboxId} was abandoned`, "refused");
    const entry = this.ports.find(port);
    if (!entry) throw new IngressDialError(`nothing listens on port ${port} in sandbox ${sandboxId}`, "refused");
    const [gatewaySide, appSide] = duplexPair();
    const context = { sandboxId, port };
    if (entry.kind === "connection") {
      const connection = streamSocketStreams(appSide, READ_AHEAD);
      Promise.resolve()
        .then(() => entry.handler(connection, context))
        .catch(() => appSide.destroy());
    } else {
      const server = createServer((req, res) => void answer(entry.handler, context, req, res));
      server.emit("connection", appSide);
    }
    return gatewaySide;
  }
}

/** Bytes read ahead of the handler before the pair's side is paused. */
const READ_AHEAD = 256 * 1024;

async function answer(handler: PortHandler, context: PortContext, req: IncomingMessage, res: ServerResponse) {
  try {
    const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "sandbox"}`);
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
    }
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    const request = new Request(url, {
      method: req.method ?? "GET",
      headers,
      ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: "half" } : {}),
    });
    const response = await handler(request, context);
    const out: Record<string, string | string[]> = {};
    response.headers.forEach((value, name) => {
      if (name !== "set-cookie") out[name] = value;
    });
    const cookies = response.headers.getSetCookie();
    if (cookies.length > 0) out["set-cookie"] = cookies;
    res.writeHead(response.status, out);
    if (response.body) {
      const reader = response.body.getReader();
      for (let next = await reader.read(); !next.done; next = await reader.read()) res.write(next.value);
    }
    res.end();
  } catch (error) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
    res.end(`the port handler failed: ${(error as Error).message}\n`);
  }
}
