// Into a sandbox, for real: exposed ports (tunnels), connect tokens, service URLs, TCP
// readiness probes, sb.connect and sb.tunnel (many connections over one connection to the
// server, each with its own flow control, reconnecting after a drop, through a TCP proxy the
// tests cut and restart) reach an app listening inside a sandbox through the server, which connects
// over the sandbox's own link — with or without outbound network. Host accounts other than the
// server's cannot open connections to a sandbox around it.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { Probe, SandboxClient, TimeoutError, TunnelError } from "@sbx/node";
import {
  SERVE_TCP_APP,
  SOURCE_OR_ECHO,
  serveSandboxApp,
  startSandboxApp,
  TCP_ECHO,
} from "@sbx/test-fixtures/sandbox-apps";
import { TcpProxy } from "@sbx/test-fixtures/tcp-proxy";
import { nodeWire } from "@sbx/test-fixtures/wire";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorOf, realServerAvailable, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

/** `length` bytes of a pattern of its own for `seed`. */
function bytesFor(seed: number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 7 + (i >> 10)) & 0xff;
  return bytes;
}

/** Sends `bytes` over a local TCP connection, ends its side, and resolves with all that came back. */
function bytesRoundTrip(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const socket = netConnect({ host: "127.0.0.1", port, allowHalfOpen: true });
    const parts: Buffer[] = [];
    socket.on("data", (d: Buffer) => parts.push(d));
    socket.on("end", () => {
      socket.end();
      resolve(Buffer.concat(parts));
    });
    socket.on("error", reject);
    socket.end(bytes);
  });
}

/**
 * An HTTP/1.1 keep-alive app that logs each request line to /tmp/seen, answers GET /ws by
 * switching protocols (then echoes), and anything else with a 200.
 */
const UPGRADE_APP = String.raw`
import socketserver, sys
class App(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                c = self.rfile.read(1)
                if not c: return
                head += c
            line = head.split(b"\r\n")[0].decode()
            with open("/tmp/seen", "a") as f: f.write(line + "\n")
            if line.startswith("GET /ws "):
                self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
                while True:
                    data = self.request.recv(65536)
                    if not data: break
                    self.request.sendall(data)
                return
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
${SERVE_TCP_APP}`;

/** An HTTP/1.1 keep-alive app on 8080 that ignores Upgrade and logs every request it gets to /tmp/seen. */
const LOGGING_APP = String.raw`
import http.server, json
class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        with open("/tmp/seen", "a") as f:
            f.write(json.dumps({"path": self.path, "user": self.headers.get("X-Verified-User-Data")}) + "\n")
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
server = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), App)
print("ready", flush=True)
server.serve_forever()
`;

/** Sends `text` over a TCP connection, ends its side, and resolves with all that came back. */
function roundTrip(host: string, port: number, text: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = netConnect({ host, port });
    let got = "";
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      got += d;
    });
    socket.on("end", () => resolve(got));
    socket.on("error", reject);
    socket.end(text);
  });
}

if (available) {
  describe("ingress into sandboxes on the server", () => {
    // Sandboxes reach nothing beyond this machine (an egress ceiling on a test range).
    const server = useTestServer({ network: { allow: ["198.18.0.0/15"] } });
    let client: SandboxClient;
    beforeAll(() => {
      client = new SandboxClient({ endpoint: server.url, token: server.token });
    });
    afterAll(async () => {
      await client.close();
    });

    it("tunnels reach an exposed port, with outbound on and with blockNetwork", async () => {
      for (const blockNetwork of [false, true]) {
        await using sb = await client.sandboxes.create({ ports: [8000], blockNetwork });
        await serveSandboxApp(sb, 8000, "http-echo");
        const tunnels = await sb.tunnels();
        const tunnel = tunnels[8000];
        expect(tunnel, `blockNetwork ${blockNetwork}`).toBeDefined();
        const answer = await fetch(`${tunnel?.url}/hello?x=1`);
        expect(answer.status).toBe(200);
        expect(((await answer.json()) as { path: string }).path).toBe("/hello?x=1");
      }
    });

    it("a tunnel carries plain TCP too (each connection piped to the sandbox's port)", async () => {
      await using sb = await client.sandboxes.create({ ports: [7000] });
      await startSandboxApp(sb, TCP_ECHO, [7000]);
      const tunnel = (await sb.tunnels())[7000];
      const text = "not HTTP at all\n".repeat(1000);
      const echoed = await roundTrip(tunnel?.host as string, tunnel?.port as number, text);
      expect(echoed).toBe(text);
    });

    it("connect tokens and service URLs reach the app, with the verified user data and nothing of ours", async () => {
      await using sb = await client.sandboxes.create();
      await serveSandboxApp(sb, 8080, "http-echo");
      const { url, token } = await sb.createConnectToken({ userMetadata: { user: "ada" } });
      expect((await fetch(url)).status).toBe(401);
      const answer = await fetch(`${url.replace(/\/$/, "")}/x`, {
        headers: { authorization: `Bearer ${token}`, "x-verified-user-data": '{"user":"mallory"}' },
      });
      expect(answer.status).toBe(200);
      const seen = (await answer.json()) as { path: string; user: string; authorization: string | null };
      expect(seen.path).toBe("/x");
      expect(JSON.parse(seen.user)).toEqual({ user: "ada" });
      expect(seen.authorization).toBeNull();
      const svc = await sb.service(8080, { expiresInMs: 60_000 });
      expect((await fetch(svc.url)).status).toBe(401);
      const viaService = await svc.fetch("/svc");
      expect(viaService.status).toBe(200);
      expect(((await viaService.json()) as { path: string }).path).toBe("/svc");
      // Nothing listens on another port: a 502 naming it.
      const other = await sb.createConnectToken({ port: 9999 });
      const refused = await fetch(other.url, { headers: { authorization: `Bearer ${other.token}` } });
      expect(refused.status).toBe(502);
      expect(await refused.text()).toMatch(/port 9999/);
    });

    it("a TCP readiness probe passes once the app listens, and times out while nothing does", async () => {
      await using sb = await client.sandboxes.create({ ports: [8000], readinessProbe: Probe.tcp(8000) });
      const early = await errorOf(sb.waitUntilReady({ timeoutMs: 1500 }));
      expect(early).toBeInstanceOf(TimeoutError);
      await serveSandboxApp(sb, 8000, "http-echo");
      await sb.waitUntilReady({ timeoutMs: 30_000 });
      const tunnels = await sb.tunnels({ timeoutMs: 30_000 });
      expect((await fetch(tunnels[8000]?.url as string)).status).toBe(200);
    });

    it("tokens are real: 401 without a token, 502 naming the port where nothing listens", async () => {
      await using sb = await client.sandboxes.create({ app: "unsupported" });
      expect(await sb.tunnels()).toEqual({}); // created without ports
      const { url, token } = await sb.createConnectToken({ userMetadata: { user: "ada" } });
      expect((await fetch(url)).status).toBe(401);
      expect((await fetch(url, { headers: { authorization: "Bearer forged" } })).status).toBe(401);
      const answer = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
      expect(answer.status).toBe(502);
      expect(await answer.text()).toMatch(/port 8080 of sandbox .* nothing listens there/);
      const svc = await sb.service(3000, { expiresInMs: 60_000 });
      expect((await fetch(svc.url)).status).toBe(401);
      expect((await svc.fetch("/")).status).toBe(502);
    });

    it("sb.connect reaches a port in the sandbox as byte streams, with outbound blocked too", async () => {
      await using sb = await client.sandboxes.create({ blockNetwork: true });
      await startSandboxApp(sb, TCP_ECHO, [7000]);
      const conn = await sb.connect(7000);
      const writer = conn.writable.getWriter();
      const payload = new Uint8Array(4 << 20).map((_, i) => i % 251);
      const reading = (async () => {
        const chunks: Uint8Array[] = [];
        let length = 0;
        for await (const chunk of conn.readable) {
          chunks.push(chunk);
          length += chunk.length;
        }
        const all = new Uint8Array(length);
        let at = 0;
        for (const chunk of chunks) {
          all.set(chunk, at);
          at += chunk.length;
        }
        return all;
      })();
      await writer.write(payload);
      await writer.close(); // half-close: the echo answers everything, then ends
      const echoed = await reading;
      expect(echoed.length).toBe(payload.length);
      expect(Buffer.from(echoed).equals(Buffer.from(payload))).toBe(true);
      // Nothing listens on another port: a TunnelError naming it.
      const refused = await errorOf(sb.connect(7001));
      expect(refused).toBeInstanceOf(TunnelError);
      expect((refused as TunnelError).port).toBe(7001);
    });

    it("sb.tunnel: 100 connections at once through one connection to the server, each byte for byte", async () => {
      await using sb = await client.sandboxes.create();
      await startSandboxApp(sb, TCP_ECHO, [7000]);
      const proxy = new TcpProxy(server.url);
      await using viaProxy = new SandboxClient({ endpoint: await proxy.start(), token: server.token });
      try {
        const same = await viaProxy.sandboxes.fromId(sb.id);
        await using tunnel = await same.tunnel(7000);
        const payloads = Array.from({ length: 100 }, (_, i) => bytesFor(i, 128 * 1024 + i));
        const echoed = await Promise.all(payloads.map((p) => bytesRoundTrip(tunnel.localPort, p)));
        echoed.forEach((bytes, i) => {
          expect(Buffer.compare(bytes, payloads[i] as Buffer), `connection ${i}`).toBe(0);
        });
        expect(proxy.count(`/sbx.v1/sandboxes/${sb.id}/tunnel`)).toBe(1);
      } finally {
        await proxy.stop();
      }
    });

    it("sb.tunnel's connections to the sandbox are the tunnel relay's: their bytes never pass through the server's process", async () => {
      await using sb = await client.sandboxes.create();
      await startSandboxApp(sb, TCP_ECHO, [7000]);
      await using tunnel = await sb.tunnel(7000);
      const local = netConnect({ host: "127.0.0.1", port: tunnel.localPort });
      try {
        local.write("x");
        await new Promise((resolve) => local.once("data", resolve));
        // The connection to the app's port is held by this server's relay (its child, sbx-agent),
        // and none by the server's own process.
        const held = spawnSync("ss", ["-Htnp", "state", "established", "dport = :7000"], { encoding: "utf8" }).stdout;
        const holders = [...held.matchAll(/\("([^"]+)",pid=(\d+),/g)].map(([, name, pid]) => ({
          name,
          pid: Number(pid),
        }));
        const parentOf = (pid: number) =>
          Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[1]);
        expect(holders.some((h) => h.name === "sbx-agent" && parentOf(h.pid) === process.pid)).toBe(true);
        expect(holders.some((h) => h.pid === process.pid)).toBe(false);
      } finally {
        local.destroy();
      }
    });

    it("sb.tunnel: a connection whose reader does not read holds up no other connection", async () => {
      await using sb = await client.sandboxes.create();
      await startSandboxApp(sb, SOURCE_OR_ECHO, [7000]);
      await using tunnel = await sb.tunnel(7000);
      const stalled = netConnect({ host: "127.0.0.1", port: tunnel.localPort });
      stalled.on("error", () => {});
      stalled.write("S");
      stalled.pause(); // its window fills, then its socket's buffers; it is never read
      await new Promise<void>((resolve) => stalled.once("readable", () => resolve()));
      try {
        const payload = bytesFor(7, 16 * 1024 * 1024);
        payload[0] = 0x45; // "E": echo
        expect(Buffer.compare(await bytesRoundTrip(tunnel.localPort, payload), payload)).toBe(0);
      } finally {
        stalled.destroy();
      }
    });

    it("sb.tunnel: a dropped server connection resets the connections through it; new ones work once it is back", async () => {
      await using sb = await client.sandboxes.create();
      await startSandboxApp(sb, TCP_ECHO, [7000]);
      const proxy = new TcpProxy(server.url);
      await using viaProxy = new SandboxClient({ endpoint: await proxy.start(), token: server.token });
      try {
        await using tunnel = await (await viaProxy.sandboxes.fromId(sb.id)).tunnel(7000);
        const local = netConnect({ host: "127.0.0.1", port: tunnel.localPort, allowHalfOpen: true });
        const ended = new Promise<string>((resolve) => {
          local.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
          local.on("end", () => resolve("clean end"));
        });
        local.write("mid-stream");
        await new Promise<void>((resolve) => local.once("data", () => resolve()));
        proxy.cut();
        expect(await ended).toBe("ECONNRESET");
        expect(await roundTrip("127.0.0.1", tunnel.localPort, "after the drop\n")).toBe("after the drop\n");
        await proxy.stop(); // the server away for a while, then back on the same address
        await expect(roundTrip("127.0.0.1", tunnel.localPort, "x")).rejects.toMatchObject({ code: "ECONNRESET" });
        await proxy.start();
        expect(await roundTrip("127.0.0.1", tunnel.localPort, "back\n")).toBe("back\n");
      } finally {
        await proxy.stop();
      }
    });

    it("sb.tunnel: a local connection to a port where nothing listens is reset", async () => {
      await using sb = await client.sandboxes.create();
      await using tunnel = await sb.tunnel(7001);
      await expect(roundTrip("127.0.0.1", tunnel.localPort, "x")).rejects.toMatchObject({ code: "ECONNRESET" });
    });

    it("an upgrade the app answers as plain HTTP ends the connection: nothing pipelined after it reaches the app", async () => {
      await using sb = await client.sandboxes.create();
      await startSandboxApp(sb, LOGGING_APP, []);
      const { url, token } = await sb.createConnectToken({ userMetadata: { user: "alice" } });
      const exchange = nodeWire.connect(
        Number(new URL(url).port),
        `GET /first HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n` +
          `GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Verified-User-Data: {"user":"bob"}\r\n\r\n`,
      );
      setTimeout(() => exchange.destroy(), 3000);
      const answer = await exchange.closed;
      expect(answer).toMatch(/^HTTP\/1\.[01] 200/);
      const seen = (await sb.run("cat /tmp/seen")).stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
      expect(seen).toEqual([{ path: "/first", user: JSON.stringify({ user: "alice" }) }]);
    });

    it("HTTP through a tunnel never carries sbx's token cookies or a caller's verified user header to the app", async () => {
      await using sb = await client.sandboxes.create({ ports: [8000] });
      await serveSandboxApp(sb, 8000, "http-echo");
      const tunnel = (await sb.tunnels())[8000];
      const answer = await fetch(`${tunnel?.url}/c`, {
        headers: { cookie: `sbx_other_8080=stolen; app=kept`, "x-verified-user-data": '{"user":"mallory"}' },
      });
      const seen = (await answer.json()) as { cookie: string | null; user: string | null };
      expect(seen.cookie).toBe("app=kept");
      expect(seen.user).toBeNull();
    });

    it("a tunnel's upgrade is piped once the app switched protocols; one the app declines is the connection's last", async () => {
      await using sb = await client.sandboxes.create({ ports: [8000] });
      await startSandboxApp(sb, UPGRADE_APP, [8000]);
      const tunnel = (await sb.tunnels())[8000];
      const at = [tunnel?.host as string, tunnel?.port as number] as const;
      const raw = "GET /raw HTTP/1.1\r\nCookie: sbx_other_8080=now-raw\r\n\r\n";
      const switched = await roundTrip(
        ...at,
        `GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n${raw}`,
      );
      expect(switched).toBe(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n${raw}`);
      const declined = await roundTrip(
        ...at,
        "GET /first HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n" +
          'GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Verified-User-Data: {"user":"bob"}\r\n\r\n',
      );
      expect(declined).toBe("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      expect((await sb.run("cat /tmp/seen")).stdout).toBe("GET /ws HTTP/1.1\nGET /first HTTP/1.1\n");
    });

    it("tunnels are served out of the server's process, and their connections end with the sandbox", async () => {
      const sb = await client.sandboxes.create({ ports: [7000] });
      await startSandboxApp(sb, TCP_ECHO, [7000]);
      const tunnel = (await sb.tunnels())[7000];
      const listening = spawnSync("ss", ["-Htlnp", `sport = :${tunnel?.port}`], { encoding: "utf8" }).stdout;
      expect(listening).toMatch(/sbx-agent/);
      expect(listening).not.toMatch(new RegExp(`pid=${process.pid},`));
      const socket = netConnect({ host: tunnel?.host as string, port: tunnel?.port as number });
      socket.on("error", () => {});
      const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
      socket.write("\x01still here");
      await new Promise((r) => socket.once("data", r));
      await sb.terminate();
      await closed;
      await expect(roundTrip(tunnel?.host as string, tunnel?.port as number, "x")).rejects.toThrow(/ECONNREFUSED/);
    });

    it("a host account other than the server's cannot connect to a sandbox's ports", async () => {
      await using sb = await client.sandboxes.create({ ports: [8000] });
      await serveSandboxApp(sb, 8000, "http-echo");
      const address = (await sb.run("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")).stdout.trim();
      expect(address).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      const connect = (uid: number) =>
        spawnSync(
          "setpriv",
          [
            `--reuid=${uid}`,
            `--regid=${uid}`,
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            `import socket; socket.create_connection(("${address}", 8000), 3)`,
          ],
          { encoding: "utf8" },
        );
      expect(connect(0).status).toBe(0); // root (the server's account) can
      const nobody = connect(65534);
      expect(nobody.status).not.toBe(0);
      expect(nobody.stderr).toMatch(/no route to host|refused|unreachable|not permitted|timed out/i);
    });
  });
}
