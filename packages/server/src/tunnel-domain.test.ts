// `sbx server --tunnel-domain`, for real: sandbox ports by host name on the server's own port —
// HTTP/1.1, HTTP/2 (:authority) and a WebSocket through an app in a sandbox, connect tokens on
// names of their own, 404 for names that lead nowhere, and the API on the same port. No DNS:
// requests resolve every name to the server (a lookup of their own) or carry a Host header.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { request as httpRequest, type OutgoingHttpHeaders } from "node:http";
import { connect as http2Connect } from "node:http2";
import type { LookupFunction } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Sandbox, SandboxClient } from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { realServerAvailable, startCliServer } from "./test-support.js";

const available = await realServerAvailable();

const DOMAIN = "sbx.test";
const HTTP_PORT = 8000;
const WS_PORT = 9000;

/**
 * In the sandbox: an HTTP app on 8000 that answers with what it was sent, and a WebSocket app
 * on 9000 (Python's standard library has no WebSocket server: the handshake and frames by hand)
 * that first says which host and verified user it was given, then echoes text messages.
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
socketserver.ThreadingTCPServer.allow_reuse_address = True
threading.Thread(target=socketserver.ThreadingTCPServer(("0.0.0.0", ${WS_PORT}), Ws).serve_forever, daemon=True).start()
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
          `python3 -c "import socket; [socket.create_connection(('127.0.0.1', p), 1) for p in (${HTTP_PORT}, ${WS_PORT})]" 2>/dev/null`,
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
  });
}
