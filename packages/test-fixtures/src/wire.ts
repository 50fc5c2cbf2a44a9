/**
 * HTTP on the wire from Node (the conformance suite's `WireClient`), to a server on loopback
 * whatever host name a request carries: HTTP/1.1 requests (node:http), raw bytes on a TCP
 * connection, HTTP/2 sessions and WebSockets (ws), every name resolved to 127.0.0.1.
 */
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import { type IncomingHttpHeaders as Http2Headers, connect as http2Connect } from "node:http2";
import { type LookupFunction, connect as netConnect } from "node:net";
import type { WireAnswer, WireClient, WireConnection, WireWebSocket } from "@sbx/testing/conformance";
import WebSocket from "ws";

/** Every name resolves to 127.0.0.1. */
export const toLoopback = ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
  if (options.all) callback(null, [{ address: "127.0.0.1", family: 4 }]);
  else callback(null, "127.0.0.1", 4);
}) as unknown as LookupFunction;

const headersOf = (headers: IncomingHttpHeaders | Http2Headers): WireAnswer["headers"] => {
  const out: Record<string, string | string[] | undefined> = {};
  for (const [name, value] of Object.entries(headers)) out[name] = Array.isArray(value) ? value : value?.toString();
  return out;
};

function connect(port: number, data: string, options: { localAddress?: string } = {}): WireConnection {
  const socket = netConnect({ port, host: "127.0.0.1", ...options });
  let all = "";
  let pending = "";
  let ended = false;
  let waiting: ((bytes: string) => void) | undefined;
  const flush = () => {
    if (!waiting || (pending === "" && !ended)) return;
    const resolve = waiting;
    waiting = undefined;
    const bytes = pending;
    pending = "";
    resolve(bytes);
  };
  socket.setEncoding("latin1");
  socket.on("data", (d: string) => {
    all += d;
    pending += d;
    flush();
  });
  socket.on("error", () => {});
  const closed = new Promise<string>((resolve) =>
    socket.once("close", () => {
      ended = true;
      flush();
      resolve(all);
    }),
  );
  socket.write(data, "latin1");
  return {
    next: () =>
      new Promise<string>((resolve) => {
        if (waiting) throw new Error("one next() at a time");
        waiting = resolve;
        flush();
      }),
    closed,
    write: (more) => void socket.write(more, "latin1"),
    destroy: () => void socket.destroy(),
  };
}

function websocket(
  url: string,
  options: { headers?: Readonly<Record<string, string>>; origin?: string; localAddress?: string } = {},
): Promise<WireWebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      lookup: toLoopback,
      ...(options.headers ? { headers: { ...options.headers } } : {}),
      ...(options.origin ? { origin: options.origin } : {}),
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    const messages: string[] = [];
    const waiting: ((text: string) => void)[] = [];
    ws.on("message", (data) => {
      const text = String(data);
      const next = waiting.shift();
      if (next) next(text);
      else messages.push(text);
    });
    ws.on("unexpected-response", (_req, res) => {
      reject(new Error(`status ${res.statusCode}`));
      res.resume();
      ws.terminate();
    });
    ws.on("error", reject);
    ws.once("open", () =>
      resolve({
        next: () => {
          const first = messages.shift();
          return first !== undefined ? Promise.resolve(first) : new Promise((r) => waiting.push(r));
        },
        send: (text) => ws.send(text),
        close: () => ws.close(),
      }),
    );
  });
}

export const nodeWire: WireClient = {
  async request(url, init = {}) {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpRequest(
        url,
        {
          method: init.method ?? "GET",
          headers: { ...(init.host ? { host: init.host } : {}), ...init.headers },
          lookup: toLoopback,
          agent: false,
        },
        resolve,
      );
      req.on("error", reject);
      req.end(init.body);
    });
    res.setEncoding("utf8");
    let text = "";
    for await (const chunk of res) text += chunk;
    return { status: res.statusCode ?? 0, headers: headersOf(res.headers), text };
  },

  connect,

  http2(url) {
    const session = http2Connect(url, { lookup: toLoopback });
    session.on("error", () => {});
    return {
      request(headers, body, options = {}) {
        const stream = session.request({ ...headers }, { endStream: body === undefined });
        const head = new Promise<{ status: number; headers: WireAnswer["headers"] }>((resolve, reject) => {
          stream.once("response", (h) => resolve({ status: Number(h[":status"]), headers: headersOf(h) }));
          stream.once("error", reject);
        });
        const answer = new Promise<WireAnswer>((resolve, reject) => {
          let text = "";
          stream.setEncoding("utf8");
          stream.on("data", (d: string) => {
            text += d;
          });
          stream.on("end", () => void head.then(({ status, headers }) => resolve({ status, headers, text }), reject));
          stream.on("error", reject);
        });
        // Whoever awaits only one of them does not leave the other's failure unhandled.
        head.catch(() => {});
        answer.catch(() => {});
        if (body !== undefined) {
          if (options.keepOpen) stream.write(body);
          else stream.end(body);
        }
        return { head, answer };
      },
      close: () => void session.destroy(),
    };
  },

  websocket,
};
