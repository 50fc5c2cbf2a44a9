// `sbx server --tunnel-domain`, for real: sandbox ports by host name on the server's own port —
// HTTP/1.1, HTTP/2 (:authority) and a WebSocket through an app in a sandbox, connect tokens on
// names of their own, 404 for names that lead nowhere, and the API on the same port; request
// framing and the verified user header as an app reads them; the hosted requests' budget. No
// DNS: requests resolve every name to the server (a lookup of their own) or carry a Host header.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { request as httpRequest, type OutgoingHttpHeaders } from "node:http";
import { connect as http2Connect } from "node:http2";
import { type LookupFunction, connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Sandbox, SandboxClient } from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { realServerAvailable, startCliServer, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

const DOMAIN = "sbx.test";
const HTTP_PORT = 8000;
const WS_PORT = 9000;
const RAW_PORT = 8100;

/**
 * In the sandbox: an HTTP app on 8000 that answers with what it was sent, a WebSocket app
 * on 9000 (Python's standard library has no WebSocket server: the handshake and frames by hand)
 * that first says which host and verified user it was given, then echoes text messages, and on
 * 8100 an app that reads one request by the framing its head announces (Content-Length, chunked
 * or none) and answers with its request line, headers and body: a body sent with no framing
 * would be left for it to read as the next request.
 */
const APPS = `python3 - <<'EOF'
import base64, hashlib, http.server, json, socketserver, threading
class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"path": self.path, "host": self.headers.get("Host"),
                           "user": self.headers.get("X-Verified-User-Data"), "cookie": self.headers.get("Cookie")}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
def frame(payload):
    n = len(payload)
    return bytes([0x81, n]) + payload if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big") + payload
class Ws(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request; data = b""
        while b"\\r\\n\\r\\n" not in data:
            more = s.recv(4096)
            if not more: return
            data += more
        head, data = data.split(b"\\r\\n\\r\\n", 1)
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in head.decode().split("\\r\\n")[1:])}
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        s.sendall(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: " + accept + b"\\r\\n\\r\\n")
        s.sendall(frame(json.dumps({"host": headers.get("host"), "user": headers.get("x-verified-user-data")}).encode()))
        while True:
            while len(data) < 6 or len(data) < 6 + (data[1] & 0x7f):
                more = s.recv(4096)
                if not more: return
                data += more
            opcode, n = data[0] & 0x0f, data[1] & 0x7f
            mask, payload, data = data[2:6], data[6:6 + n], data[6 + n:]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 8:
                s.sendall(bytes([0x88, 0])); return
            s.sendall(frame(payload))
def read_more(s, data):
    more = s.recv(65536)
    if not more: raise EOFError
    return data + more
class Raw(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request; data = b""
        try:
            while b"\\r\\n\\r\\n" not in data: data = read_more(s, data)
            head, data = data.split(b"\\r\\n\\r\\n", 1)
            lines = head.decode("latin-1").split("\\r\\n")
            headers = {}
            for l in lines[1:]:
                k, v = l.split(":", 1); headers.setdefault(k.strip().lower(), []).append(v.strip())
            body = b""
            if headers.get("transfer-encoding") == ["chunked"]:
                while True:
                    while b"\\r\\n" not in data: data = read_more(s, data)
                    size_line, data = data.split(b"\\r\\n", 1)
                    size = int(size_line, 16)
                    while len(data) < size + 2: data = read_more(s, data)
                    body += data[:size]; data = data[size + 2:]
                    if size == 0: break
            else:
                n = int(headers.get("content-length", ["0"])[0])
                while len(data) < n: data = read_more(s, data)
                body = data[:n]
        except EOFError:
            return
        out = json.dumps({"requestLine": lines[0], "headers": headers, "body": body.decode("latin-1")}).encode()
        s.sendall(b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: " + str(len(out)).encode() + b"\\r\\n\\r\\n" + out)
socketserver.ThreadingTCPServer.allow_reuse_address = True
threading.Thread(target=socketserver.ThreadingTCPServer(("0.0.0.0", ${WS_PORT}), Ws).serve_forever, daemon=True).start()
threading.Thread(target=socketserver.ThreadingTCPServer(("0.0.0.0", ${RAW_PORT}), Raw).serve_forever, daemon=True).start()
http.server.ThreadingHTTPServer(("0.0.0.0", ${HTTP_PORT}), App).serve_forever()
EOF`;

/** Every name resolves to the server (on loopback). */
const toLoopback = ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
  if (options.all) callback(null, [{ address: "127.0.0.1", family: 4 }]);
  else callback(null, "127.0.0.1", 4);
}) as unknown as LookupFunction;

/** An HTTP/1.1 request to `url` (its host resolved to the server), or to the server with `host` as Host. */
function get(
  url: string,
  init: { method?: string; headers?: OutgoingHttpHeaders; host?: string; body?: string } = {},
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: init.method ?? "GET",
        headers: { ...(init.host ? { host: init.host } : {}), ...init.headers },
        lookup: toLoopback,
        agent: false,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

/** Opens a WebSocket to `url`: its first message, and the echo of "ping". */
function echoOverWebSocket(url: string): Promise<{ hello: Record<string, unknown>; echo: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { lookup: toLoopback });
    const got: string[] = [];
    ws.on("message", (data) => {
      got.push(String(data));
      if (got.length === 1) ws.send("ping");
      else {
        ws.close();
        resolve({ hello: JSON.parse(got[0] as string), echo: got[1] as string });
      }
    });
    ws.on("unexpected-response", (_req, res) => reject(new Error(`status ${res.statusCode}`)));
    ws.on("error", reject);
  });
}

if (available) {
  describe("sbx server --tunnel-domain", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "sbx-tunnel-domain-"));
    let child: ChildProcess;
    let url: string;
    let port: number;
    let client: SandboxClient;
    let sb: Sandbox;
    let other: Sandbox;
    const host = (id: string, p: number, gateway = false) => `${p}-${id}${gateway ? "-auth" : ""}.${DOMAIN}`;

    beforeAll(async () => {
      // As users start it (the CLI's build), sandboxes reaching nothing beyond this machine.
      ({ child, url } = await startCliServer(dataDir, {
        args: ["--tunnel-domain", "SBX.test.", "--tunnel-scheme", "http", "--net-allow", "198.18.0.0/15"],
      }));
      port = Number(new URL(url).port);
      // The API on the same port, through the SDK (its own address as the host).
      client = new SandboxClient({ endpoint: url, token: "t" });
      sb = await client.sandboxes.create({ ports: [HTTP_PORT, WS_PORT], blockNetwork: true });
      other = await client.sandboxes.create({ ports: [HTTP_PORT] });
      await sb.run(APPS, { wait: false, timeoutMs: 0 });
      for (let i = 0; ; i++) {
        const up = await sb.run(
          `python3 -c "import socket; [socket.create_connection(('127.0.0.1', p), 1) for p in (${HTTP_PORT}, ${WS_PORT}, ${RAW_PORT})]" 2>/dev/null`,
        );
        if (up.exitCode === 0) break;
        if (i > 100) throw new Error("the apps did not start");
        await new Promise((r) => setTimeout(r, 100));
      }
    }, 60_000);
    afterAll(async () => {
      await client?.close();
      child?.kill("SIGTERM");
      if (child && child.exitCode === null) await new Promise((resolve) => child.once("exit", resolve));
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("tunnels are host names on the server's port: HTTP/1.1 by Host, case and trailing dot aside", async () => {
      const tunnels = await sb.tunnels();
      expect(tunnels[HTTP_PORT]).toEqual({
        host: host(sb.id, HTTP_PORT),
        port,
        url: `http://${host(sb.id, HTTP_PORT)}:${port}`,
      });
      const answer = await get(`${tunnels[HTTP_PORT]?.url}/hello?x=1`, {
        headers: { "x-verified-user-data": "forged", cookie: `sbx_${other.id}_8080=stolen; theme=dark` },
      });
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.text)).toEqual({
        path: "/hello?x=1",
        host: `${host(sb.id, HTTP_PORT)}:${port}`,
        user: null,
        cookie: "theme=dark",
      });
      const upper = await get(`${url}/up`, { host: `${host(sb.id, HTTP_PORT).toUpperCase()}.` });
      expect(JSON.parse(upper.text)).toMatchObject({ path: "/up" });
    });

    it("HTTP/2 by :authority reaches the app (as HTTP/1.1) on the API's own session", async () => {
      const session = http2Connect(url);
      try {
        const ask = (authority: string, path: string, extra: Record<string, string> = {}) =>
          new Promise<{ status: number; text: string }>((resolve, reject) => {
            const stream = session.request({ ":authority": authority, ":path": path, ...extra });
            let status = 0;
            let text = "";
            stream.setEncoding("utf8");
            stream.on("response", (h) => {
              status = Number(h[":status"]);
            });
            stream.on("data", (d: string) => {
              text += d;
            });
            stream.on("end", () => resolve({ status, text }));
            stream.on("error", reject);
            stream.end(extra[":method"] === "POST" ? "{}" : undefined);
          });
        const viaTunnel = await ask(host(sb.id, HTTP_PORT), "/h2");
        expect(viaTunnel.status).toBe(200);
        expect(JSON.parse(viaTunnel.text)).toMatchObject({ path: "/h2", host: host(sb.id, HTTP_PORT) });
        const api = await ask(DOMAIN, "/sbx.v1.ImageService/ListImages", {
          ":method": "POST",
          "content-type": "application/json",
          authorization: "Bearer t",
        });
        expect(api.status).toBe(200);
      } finally {
        session.destroy();
      }
    });

    it("a WebSocket upgrade through a tunnel's name and a gateway's", async () => {
      const tunnel = (await sb.tunnels())[WS_PORT];
      const viaTunnel = await echoOverWebSocket(`ws://${tunnel?.host}:${tunnel?.port}/socket`);
      expect(viaTunnel).toEqual({ hello: { host: `${tunnel?.host}:${port}`, user: null }, echo: "ping" });
      const { url: tokenUrl, token } = await sb.createConnectToken({ port: WS_PORT, userMetadata: { user: "ada" } });
      const wsUrl = tokenUrl.replace(/^http/, "ws");
      await expect(echoOverWebSocket(wsUrl)).rejects.toThrow("status 401");
      const viaGateway = await echoOverWebSocket(`${wsUrl}/?sbx_token=${token}`);
      expect(viaGateway).toEqual({ hello: { host: `${new URL(wsUrl).host}`, user: '{"user":"ada"}' }, echo: "ping" });
    });

    it("connect tokens on a name of their own: 401 without, the metadata with; not on another sandbox's names", async () => {
      const { url: tokenUrl, token } = await sb.createConnectToken({
        port: HTTP_PORT,
        userMetadata: { user: "ada" },
      });
      expect(tokenUrl).toBe(`http://${host(sb.id, HTTP_PORT, true)}:${port}`);
      expect((await get(tokenUrl)).status).toBe(401);
      const answer = await get(`${tokenUrl}/x`, {
        headers: { authorization: `Bearer ${token}`, "x-verified-user-data": '{"user":"mallory"}' },
      });
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.text)).toMatchObject({ path: "/x", user: '{"user":"ada"}' });
      // This sandbox's token on the other sandbox's gateway name: 401; on a port it does not expose: 404.
      const bearer = { authorization: `Bearer ${token}` };
      expect((await get(url, { host: host(other.id, HTTP_PORT, true), headers: bearer })).status).toBe(401);
      expect((await get(url, { host: host(other.id, WS_PORT), headers: bearer })).status).toBe(404);
    });

    it("an unknown sandbox or a port not exposed: 404; a malformed sandbox name: 400; the API is untouched", async () => {
      for (const name of [host("sb-00000000000000000000", HTTP_PORT), host(sb.id, 8001)]) {
        const answer = await get(url, { host: name });
        expect(answer.status, name).toBe(404);
        expect(answer.text).toBe("404 Not Found: no such sandbox port here\n");
      }
      expect((await get(url, { host: `99999-${sb.id}.${DOMAIN}` })).status).toBe(400);
      // The API answers for any other name, and still asks for its token.
      const listed: string[] = [];
      for await (const s of client.sandboxes.list()) listed.push(s.id);
      expect(listed).toEqual(expect.arrayContaining([sb.id, other.id]));
      const listImages = (authorization?: string) =>
        get(`${url}/sbx.v1.ImageService/ListImages`, {
          method: "POST",
          host: DOMAIN,
          headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
          body: "{}",
        });
      expect((await listImages("Bearer t")).status).toBe(200);
      expect((await listImages()).status).toBe(401);
    });

    it("an app reads the request it was sent: HTTP/2 bodies chunked, lengths and the verified user kept whatever Connection says", async () => {
      const { url: tokenUrl, token } = await sb.createConnectToken({ port: RAW_PORT, userMetadata: { user: "ada" } });
      const name = new URL(tokenUrl).host;
      interface Received {
        requestLine: string;
        headers: Record<string, string[]>;
        body: string;
      }
      // HTTP/2: a GET whose DATA (with no content-length) is shaped like a second request.
      const smuggled = `GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Verified-User-Data: {"user":"bob"}\r\n\r\n`;
      const session = http2Connect(url);
      try {
        const text = await new Promise<string>((resolve, reject) => {
          const stream = session.request(
            { ":method": "GET", ":path": "/first", ":authority": name, authorization: `Bearer ${token}` },
            { endStream: false },
          );
          let got = "";
          stream.setEncoding("utf8");
          stream.on("data", (d: string) => {
            got += d;
          });
          stream.on("end", () => resolve(got));
          stream.on("error", reject);
          stream.end(smuggled);
        });
        const app = JSON.parse(text) as Received;
        expect(app).toMatchObject({ requestLine: "GET /first HTTP/1.1", body: smuggled });
        expect(app.headers).toMatchObject({
          "transfer-encoding": ["chunked"],
          "x-verified-user-data": ['{"user":"ada"}'],
        });
      } finally {
        session.destroy();
      }
      // HTTP/1.1: Connection naming Content-Length and the verified header removes neither.
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = netConnect(port, "127.0.0.1");
        let got = "";
        socket.setEncoding("latin1");
        socket.on("data", (d: string) => {
          got += d;
        });
        socket.on("close", () => resolve(got));
        socket.on("error", reject);
        socket.write(
          `GET /cl HTTP/1.1\r\nHost: ${name}\r\nAuthorization: Bearer ${token}\r\n` +
            `Connection: close, content-length, x-verified-user-data\r\nContent-Length: 5\r\n\r\nHELLO`,
        );
      });
      const app = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as Received;
      expect(app.body).toBe("HELLO");
      expect(app.headers).toMatchObject({ "content-length": ["5"], "x-verified-user-data": ['{"user":"ada"}'] });
    });

    it("the app sees the name the request was routed by; a cookie from a sibling's page does not post", async () => {
      const session = http2Connect(url);
      try {
        const text = await new Promise<string>((resolve, reject) => {
          const stream = session.request({ ":path": "/h", ":authority": host(sb.id, HTTP_PORT), host: "evil.example" });
          let got = "";
          stream.setEncoding("utf8");
          stream.on("data", (d: string) => {
            got += d;
          });
          stream.on("end", () => resolve(got));
          stream.on("error", reject);
        });
        expect(JSON.parse(text)).toMatchObject({ path: "/h", host: host(sb.id, HTTP_PORT) });
      } finally {
        session.destroy();
      }
      const { url: tokenUrl, token } = await sb.createConnectToken({ port: HTTP_PORT });
      const posted = await get(tokenUrl, {
        method: "POST",
        headers: {
          cookie: `sbx_${sb.id}_${HTTP_PORT}=${token}`,
          origin: `http://${host(other.id, HTTP_PORT)}:${port}`,
        },
      });
      expect(posted.status).toBe(403);
    });
  });

  /**
   * In the sandbox: an app on RAW_PORT that starts answering a request at once (200, chunked, a
   * first chunk) and then never finishes, reading whatever body comes: each stays in flight.
   */
  const SLOW_APP = `python3 - <<'EOF'
import socketserver
class Slow(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request; data = b""
        while b"\\r\\n\\r\\n" not in data:
            more = s.recv(65536)
            if not more: return
            data += more
        s.sendall(b"HTTP/1.1 200 OK\\r\\ntransfer-encoding: chunked\\r\\n\\r\\n1\\r\\n.\\r\\n")
        while s.recv(65536): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", ${RAW_PORT}), Slow).serve_forever()
EOF`;

  describe("sbx server --tunnel-domain: the hosted requests' budget", () => {
    const server = useTestServer({
      tunnelDomain: DOMAIN,
      tunnelScheme: "http",
      network: { allow: ["198.18.0.0/15"] },
      connections: { maxConnections: 20, maxSilentConnectionsPerAddress: 5 },
    });
    let client: SandboxClient;
    let sb: Sandbox;
    beforeAll(async () => {
      client = new SandboxClient({ endpoint: server.url, token: server.token });
      sb = await client.sandboxes.create({ ports: [RAW_PORT], blockNetwork: true });
      await sb.run(SLOW_APP, { wait: false, timeoutMs: 0 });
      for (let i = 0; ; i++) {
        const up = await sb.run(
          `python3 -c "import socket; socket.create_connection(('127.0.0.1', ${RAW_PORT}), 1)" 2>/dev/null`,
        );
        if (up.exitCode === 0) break;
        if (i > 100) throw new Error("the app did not start");
        await new Promise((r) => setTimeout(r, 100));
      }
    }, 60_000);
    afterAll(async () => {
      await sb?.terminate();
      await client?.close();
    });

    it("anonymous requests to an open tunnel that never end take at most half the connections: the API still answers", async () => {
      const port = Number(new URL(server.url).port);
      const name = `${RAW_PORT}-${sb.id}.${DOMAIN}`;
      const held: Socket[] = [];
      const statuses: string[] = [];
      for (let i = 0; i < 20; i++) {
        const socket = netConnect(port, "127.0.0.1");
        held.push(socket);
        socket.on("error", () => {});
        socket.setEncoding("latin1");
        // The first bytes back: the app's 200 (let through, in flight for good) or a refusal.
        statuses.push(
          await new Promise<string>((resolve) => {
            socket.once("data", (d: string) => resolve(d.split("\r\n")[0] ?? ""));
            socket.once("close", () => resolve("(closed)"));
            socket.write(`POST /slow/${i} HTTP/1.1\r\nHost: ${name}\r\nContent-Length: 100000\r\n\r\nx`);
          }),
        );
      }
      const api = await new Promise<string>((resolve) => {
        const socket = netConnect(port, "127.0.0.1");
        let got = "";
        socket.setEncoding("latin1");
        socket.on("data", (d: string) => {
          got += d;
        });
        socket.on("error", () => {});
        socket.on("close", () => resolve(got.split("\r\n")[0] ?? ""));
        socket.write(
          `POST /sbx.v1.ImageService/ListImages HTTP/1.1\r\nHost: ${DOMAIN}\r\nAuthorization: Bearer ${server.token}\r\n` +
            `content-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}`,
        );
      });
      for (const socket of held) socket.destroy();
      expect(api).toBe("HTTP/1.1 200 OK");
      expect(statuses.filter((s) => s === "HTTP/1.1 200 OK")).toHaveLength(10);
      expect(statuses.filter((s) => s === "HTTP/1.1 503 Service Unavailable")).toHaveLength(10);
    });
  });
}
