// A tunnel of ListenerIngress (the JavaScript path: the fake's, and the server's without its
// relay) against a raw TCP app: what reaches the app, whatever the client's timing.
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ListenerIngress, sniffStart } from "./listener-ingress.js";
import { IngressTokens, randomTokenKey } from "./tokens.js";

const SECRET_REQUEST =
  'GET /late HTTP/1.1\r\nHost: h\r\nCookie: a=1; sbx_sb-OTHER_8080=SECRET\r\nX-Verified-User-Data: {"user":"admin"}\r\n\r\n';

interface App {
  readonly server: Server;
  /** Every byte each connection sent it. */
  readonly seen: string[];
}

/** A TCP app: `serve` handles each connection (`sent`: what it sent so far); what each sent is kept. */
async function rawApp(serve: (socket: Socket, sent: () => string) => void): Promise<App> {
  const seen: string[] = [];
  const server = createServer((socket) => {
    const index = seen.push("") - 1;
    socket.on("data", (chunk) => {
      seen[index] += chunk.toString("latin1");
    });
    socket.on("error", () => {});
    serve(socket, () => seen[index] ?? "");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, seen };
}

/** Answers each request (a head, no body) with its path. */
function httpApp(socket: Socket, seen: () => string) {
  let answered = 0;
  socket.on("data", () => {
    const heads = seen().split("\r\n\r\n").length - 1;
    for (; answered < heads; answered++) {
      const path =
        /^\w+ (\S+)/.exec(
          seen()
            .split("\r\n\r\n")
            [answered]?.replace(/^[\r\n]+/, "") ?? "",
        )?.[1] ?? "?";
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${path.length}\r\n\r\n${path}`);
    }
  });
}

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function tunnelTo(app: App): Promise<number> {
  const appPort = (app.server.address() as { port: number }).port;
  const ingress = new ListenerIngress({
    host: "127.0.0.1",
    tokens: new IngressTokens(randomTokenKey()),
    dialer: {
      dial: () =>
        new Promise((resolve, reject) => {
          const socket = connect({ host: "127.0.0.1", port: appPort }, () => resolve(socket));
          socket.once("error", reject);
        }),
    },
  });
  closers.push(
    () => ingress.close(),
    () => new Promise<void>((resolve) => app.server.close(() => resolve())),
  );
  const [tunnel] = await ingress.tunnels("sb-1", [8000]);
  return tunnel?.port ?? 0;
}

/** A client: what it received so far, whether it closed. */
function client(port: number) {
  const socket = connect({ host: "127.0.0.1", port });
  let received = "";
  socket.on("data", (chunk) => {
    received += chunk.toString("latin1");
  });
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  return { socket, closed, received: () => received };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a tunnel of ListenerIngress", () => {
  it("reads a request that comes after the sniff's wait (a browser's preconnect) as one", async () => {
    const app = await rawApp(httpApp);
    const { seen } = app;
    const port = await tunnelTo(app);
    const c = client(port);
    await sleep(500); // (silent past the sniff's wait, then the request)
    c.socket.write(SECRET_REQUEST);
    await expect.poll(c.received, { timeout: 10_000 }).toMatch(/\/late$/);
    c.socket.write(SECRET_REQUEST.replace("/late", "/second"));
    await expect.poll(c.received, { timeout: 10_000 }).toMatch(/\/second$/);
    expect(seen.join("")).not.toMatch(/SECRET|admin/);
    expect(seen.join("")).toMatch(/GET \/late/);
    c.socket.destroy();
  });

  it("ends the connection on an HTTP request after the app spoke first; pipes a late non-HTTP client", async () => {
    const app = await rawApp((socket) => socket.write("220 hello\r\n"));
    const port = await tunnelTo(app);
    const c = client(port);
    await expect.poll(c.received, { timeout: 10_000 }).toBe("220 hello\r\n");
    c.socket.write(SECRET_REQUEST);
    await c.closed;
    await sleep(50);
    expect(app.seen.join("")).toBe("");

    const echo = await rawApp((socket) => socket.pipe(socket));
    const d = client(await tunnelTo(echo));
    await sleep(500);
    d.socket.write("\x00\x01binary");
    await expect.poll(d.received, { timeout: 10_000 }).toBe("\x00\x01binary");
    d.socket.destroy();
  });

  it("refuses framing field names spelt with '_' (400), and passes big response heads", async () => {
    const policy = "a".repeat(48 * 1024);
    const app = await rawApp((socket) =>
      socket.once("data", () =>
        socket.end(`HTTP/1.1 200 OK\r\ncontent-security-policy: ${policy}\r\ncontent-length: 2\r\n\r\nok`),
      ),
    );
    const port = await tunnelTo(app);
    const body = '0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\nX-Verified-User-Data: {"user":"admin"}\r\n\r\n';
    for (const field of ["Transfer_Encoding: chunked", "Content_Length: 5", "Keep_Alive: 1"]) {
      const c = client(port);
      c.socket.write(`POST / HTTP/1.1\r\nHost: h\r\n${field}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      await expect.poll(c.received, { timeout: 10_000 }).toMatch(/^HTTP\/1\.1 400 /);
      c.socket.destroy();
    }
    expect(app.seen.join("")).toBe("");
    // (fetch's own client takes no head this big: a raw one.)
    const c = client(port);
    c.socket.write("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    await expect.poll(c.received, { timeout: 10_000 }).toMatch(/\r\n\r\nok$/);
    expect(c.received()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(c.received()).toContain(`content-security-policy: ${policy}\r\n`);
    c.socket.destroy();
  });

  it("sniffs a request's start however it comes split", () => {
    const verdicts = (text: string) => [...text].map((_, i) => sniffStart(Buffer.from(text.slice(0, i + 1), "latin1")));
    expect(verdicts("GET /").at(-1)).toBe("http");
    expect(verdicts("GET /").slice(0, -1)).toEqual(["more", "more", "more", "more"]);
    expect(sniffStart(Buffer.from("get http://x/"))).toBe("http");
    expect(sniffStart(Buffer.from("GET ftp"))).toBe("raw");
    expect(sniffStart(Buffer.from("\x16\x03\x01"))).toBe("raw");
    expect(sniffStart(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))).toBe("raw");
    expect(sniffStart(Buffer.from("PRI * HTTP/2"))).toBe("more");
  });
});
