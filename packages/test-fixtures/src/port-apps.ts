/**
 * Test apps as the fake runs them: handlers for `fake.onPort` / `fake.onPortConnection` (Node).
 * The conformance suite's apps (its `TestAppName`s) behave as their programs in real sandboxes
 * do (sandbox-apps.ts): keep the two in step.
 */
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { Duplex } from "node:stream";
import { type FakeControls, readHttpMessage, type TestAppName } from "@sbx/testing/conformance";
import { WebSocketServer } from "ws";

type PortHandler = Parameters<FakeControls["onPort"]>[1];
type ConnectionHandler = Parameters<FakeControls["onPortConnection"]>[1];
type Connection = Parameters<ConnectionHandler>[0];

const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** The next bytes of `reader` as latin1 text, or undefined at its end (or failure). */
async function readText(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string | undefined> {
  const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }));
  return done ? undefined : Buffer.from(value).toString("latin1");
}

const httpEcho: PortHandler = async (request, { sandboxId, port }) => {
  const url = new URL(request.url);
  if (url.pathname === "/h2-settings") return new Response("ok", { headers: { "http2-settings": "AAA" } });
  return Response.json(
    {
      sandboxId,
      port,
      method: request.method,
      path: url.pathname + url.search,
      host: request.headers.get("host"),
      user: request.headers.get("x-verified-user-data"),
      cookie: request.headers.get("cookie"),
      authorization: request.headers.get("authorization"),
      body: await request.text(),
    },
    { headers: { "set-cookie": "app=1; Path=/" } },
  );
};

const websockets = new WebSocketServer({ noServer: true });
const websocketEcho: ConnectionHandler = (connection) => {
  const app = createServer();
  app.on("upgrade", (req, socket, head) =>
    websockets.handleUpgrade(req, socket, head, (ws) => {
      ws.send(JSON.stringify({ host: req.headers.host, user: req.headers["x-verified-user-data"] ?? null }));
      ws.on("message", (data, binary) => ws.send(data, { binary }));
    }),
  );
  app.emit("connection", Duplex.fromWeb(connection as unknown as Parameters<typeof Duplex.fromWeb>[0]));
};

const requestReader: ConnectionHandler = async ({ readable, writable }) => {
  const reader = readable.getReader();
  let bytes = "";
  for (let more = await readText(reader); more !== undefined; more = await readText(reader)) {
    bytes += more;
    const request = readHttpMessage(bytes);
    if (!request) continue;
    const body = JSON.stringify({ requestLine: request.startLine, headers: request.headers, body: request.body });
    const writer = writable.getWriter();
    await writer.write(
      Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`),
    );
    await writer.close();
    return;
  }
};

const heldRequests: ConnectionHandler = async ({ readable, writable }) => {
  const reader = readable.getReader();
  let head = "";
  while (!head.includes("\r\n\r\n")) {
    const more = await readText(reader);
    if (more === undefined) return;
    head += more;
  }
  const writer = writable.getWriter();
  const key = /^sec-websocket-key:\s*(.*?)\s*$/im.exec(head)?.[1];
  if (key && /^upgrade:\s*websocket\s*$/im.test(head)) {
    const accept = createHash("sha1").update(`${key}${WEBSOCKET_GUID}`).digest("base64");
    await writer.write(
      Buffer.from(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      ),
    );
  } else if (!(head.split(" ")[1] ?? "").startsWith("/quiet")) {
    await writer.write(Buffer.from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\n.\r\n"));
  }
  while ((await readText(reader)) !== undefined) {
    // held: whatever comes is read, nothing answered
  }
};

/** Scripts `app` on `port` in every sandbox of `fake`. */
export function servePortApp(
  fake: Pick<FakeControls, "onPort" | "onPortConnection">,
  port: number,
  app: TestAppName,
): void {
  if (app === "http-echo") fake.onPort(port, httpEcho);
  else if (app === "websocket-echo") fake.onPortConnection(port, websocketEcho);
  else if (app === "request-reader") fake.onPortConnection(port, requestReader);
  else fake.onPortConnection(port, heldRequests);
}

/**
 * A connection whose first byte is "S" is sent 64 KiB blocks without end (and never read
 * again); any other is echoed, its first byte and all that follows, then ended.
 */
export async function sourceOrEcho({ readable, writable }: Connection): Promise<void> {
  const reader = readable.getReader();
  const writer = writable.getWriter();
  const first = await reader.read();
  if (first.done) return writer.close();
  if (first.value[0] === 0x53) {
    const block = new Uint8Array(64 * 1024).fill(0x73);
    for (;;) await writer.write(block);
  }
  await writer.write(first.value);
  for (let next = await reader.read(); !next.done; next = await reader.read()) await writer.write(next.value);
  await writer.close();
}
