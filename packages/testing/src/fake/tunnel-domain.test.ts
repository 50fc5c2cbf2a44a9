// A tunnel domain on the fake (the server's own front door and gateway): sandbox ports by host
// name on the fake's own port, over HTTP/1.1, HTTP/2 (:authority) and WebSockets, no DNS needed
// (a lookup that sends every name to the fake, or an explicit Host header).
import { createServer, request as httpRequest, type OutgoingHttpHeaders } from "node:http";
import { connect as http2Connect } from "node:http2";
import { type LookupFunction, connect as netConnect } from "node:net";
import { Duplex } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Sandbox, SandboxClient } from "@sbx/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { createFakeServer, type FakeServer } from "../index.js";

const DOMAIN = "sbx.test";
const APP = 8000;
const WS = 9000;

/** Every name resolves to the fake (on loopback). */
const toLoopback = ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
  if (options.all) callback(null, [{ address: "127.0.0.1", family: 4 }]);
  else callback(null, "127.0.0.1", 4);
}) as unknown as LookupFunction;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** An HTTP/1.1 request to `url` (its host resolved to the fake), or to the fake with `host` as the Host header. */
function send(
  url: string,
  init: { method?: string; headers?: OutgoingHttpHeaders; body?: string; host?: string } = {},
): Promise<Answer> {
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
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

describe("a tunnel domain on the fake", () => {
  let fake: FakeServer;
  let client: SandboxClient;
  let fakeUrl: string;
  let fakePort: number;
  let sb: Sandbox;
  let other: Sandbox;

  beforeAll(async () => {
    fake = createFakeServer({ tunnelDomain: DOMAIN.toUpperCase(), tunnelScheme: "http" });
    const listener = await fake.listen();
    fakeUrl = listener.url;
    fakePort = listener.port;
    client = new SandboxClient({ transport: fake.transport });
    fake.onPort(APP, async (request, { sandboxId, port }) => {
      const url = new URL(request.url);
      if (url.pathname === "/h2-settings") return new Response("ok", { headers: { "http2-settings": "AAA" } });
      return Response.json(
        {
          sandboxId,
          port,
          host: request.headers.get("host"),
          path: url.pathname + url.search,
          user: request.headers.get("x-verified-user-data"),
          cookie: request.headers.get("cookie"),
          body: request.method === "POST" ? await request.text() : "",
        },
        { headers: { "set-cookie": "app=1; Path=/" } },
      );
    });
    const wss = new WebSocketServer({ noServer: true });
    fake.onPortConnection(WS, (connection) => {
      const app = createServer();
      app.on("upgrade", (req, socket, head) =>
        wss.handleUpgrade(req, socket, head, (ws) => {
          ws.send(JSON.stringify({ host: req.headers.host, user: req.headers["x-verified-user-data"] ?? null }));
          ws.on("message", (data, binary) => ws.send(data, { binary }));
        }),
      );
      app.emit("connection", Duplex.fromWeb(connection as Parameters<typeof Duplex.fromWeb>[0]));
    });
    sb = await client.sandboxes.create({ ports: [APP, WS] });
    other = await client.sandboxes.create({ ports: [APP] });
  });
  afterAll(async () => {
    await client.close();
    await fake.close();
  });

  const host = (id: string, port: number, gateway = false) => `${port}-${id}${gateway ? "-auth" : ""}.${DOMAIN}`;

  it("tunnels are host names on the fake's own port, and reach the exposed port over HTTP/1.1", async () => {
    const tunnels = await sb.tunnels();
    expect(tunnels[APP]).toEqual({
      host: host(sb.id, APP),
      port: fakePort,
      url: `http://${host(sb.id, APP)}:${fakePort}`,
    });
    const answer = await send(`${tunnels[APP]?.url}/hello?x=1`, {
      headers: { "x-verified-user-data": "forged", cookie: `sbx_${other.id}_${APP}=stolen; theme=dark` },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers["access-control-allow-origin"]).toBeUndefined(); // not the API's answer
    expect(answer.headers["set-cookie"]).toEqual(["app=1; Path=/"]);
    expect(JSON.parse(answer.text)).toMatchObject({
      sandboxId: sb.id,
      port: APP,
      host: `${host(sb.id, APP)}:${fakePort}`,
      path: "/hello?x=1",
      user: null,
      cookie: "theme=dark",
    });
    // Case, a trailing dot and any port in Host do not matter.
    for (const name of [host(sb.id, APP).toUpperCase(), `${host(sb.id, APP)}.`, `${host(sb.id, APP)}:443`]) {
      const seen = await send(`${fakeUrl}/case`, { host: name });
      expect(seen.status, name).toBe(200);
      expect(JSON.parse(seen.text).sandboxId).toBe(sb.id);
    }
  });

  it("an unknown sandbox, a port it does not expose, a finished one: 404 alike; a malformed sandbox name: 400", async () => {
    // (A gateway's name answers 401 without a token, whatever the sandbox: tunnel-domain-requests.test.ts.)
    const notFound = [host("sb-00000000000000000000", APP), host(sb.id, 8001)];
    const ended = await client.sandboxes.create({ ports: [APP] });
    const endedHost = (await ended.tunnels())[APP]?.host as string;
    expect((await send(`${fakeUrl}/`, { host: endedHost })).status).toBe(200);
    await ended.terminate();
    notFound.push(endedHost);
    const bodies = new Set<string>();
    for (const name of notFound) {
      const answer = await send(`${fakeUrl}/`, { host: name });
      expect(answer.status, name).toBe(404);
      bodies.add(answer.text);
    }
    expect([...bodies]).toEqual(["404 Not Found: no such sandbox port here\n"]);
    for (const name of [`0-${sb.id}.${DOMAIN}`, `${APP}-${sb.id}.x.${DOMAIN}`, `${APP}-${sb.id}_.${DOMAIN}:80`]) {
      const answer = await send(`${fakeUrl}/`, { host: name });
      expect(answer.status, name).toBe(400);
      expect(answer.text, name).toMatch(/^400 Bad Request: /);
    }
  });

  it("several Host headers where one names a sandbox: 400", async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = netConnect(fakePort, "127.0.0.1");
      socket.setEncoding("utf8");
      socket.once("data", (d: string) => {
        resolve(d);
        socket.destroy();
      });
      socket.on("error", reject);
      socket.write(`GET / HTTP/1.1\r\nHost: ${DOMAIN}\r\nHost: ${host(sb.id, APP)}\r\n\r\n`);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
  });

  it("the API answers on the same port: its own address, the domain itself and other names under it", async () => {
    for (const name of [undefined, DOMAIN, `${DOMAIN}.`, `api.${DOMAIN}:7420`, `api-${APP}.${DOMAIN}`]) {
      const answer = await send(`${fakeUrl}/sbx.v1.ImageService/ListImages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
        ...(name ? { host: name } : {}),
      });
      expect(answer.status, name).toBe(200);
      expect(answer.headers["access-control-allow-origin"], name).toBe("*");
    }
    // And a sandbox's name never reaches the API, whatever the path.
    const viaSandbox = await send(`${fakeUrl}/sbx.v1.ImageService/ListImages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
      host: host(sb.id, APP),
    });
    expect(JSON.parse(viaSandbox.text)).toMatchObject({ path: "/sbx.v1.ImageService/ListImages", body: "{}" });
  });

  it("connect tokens: a name of the port's own, 401 without, the metadata with; another sandbox's token: 401", async () => {
    const { url, token } = await sb.createConnectToken({ port: APP, userMetadata: { user: "ada" } });
    expect(url).toBe(`http://${host(sb.id, APP, true)}:${fakePort}`);
    expect((await send(url)).status).toBe(401);
    const answer = await send(`${url}/x`, {
      headers: { authorization: `Bearer ${token}`, "x-verified-user-data": '{"user":"mallory"}' },
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.text)).toMatchObject({ sandboxId: sb.id, path: "/x", user: '{"user":"ada"}' });
    // A token of this sandbox on another sandbox's name: 401 (its gateway) or 404 (a port not exposed, no gateway name).
    const elsewhere = await send(`${fakeUrl}/`, {
      host: host(other.id, APP, true),
      headers: { authorization: `Bearer ${token}` },
    });
    expect(elsewhere.status).toBe(401);
    const openTunnel = await send(`${fakeUrl}/`, {
      host: host(other.id, APP),
      headers: { authorization: `Bearer ${token}` },
    });
    expect(JSON.parse(openTunnel.text)).toMatchObject({ sandboxId: other.id, user: null });
    // Service URLs too; the SDK's ServiceURL builds on the same URL.
    const svc = await sb.service(APP, { expiresInMs: 60_000 });
    expect(svc.url).toBe(`http://${host(sb.id, APP, true)}:${fakePort}`);
    expect((await send(svc.url)).status).toBe(401);
    const viaService = await send(`${svc.url}/s`, { headers: { authorization: `Bearer ${await svc.token()}` } });
    expect(JSON.parse(viaService.text)).toMatchObject({ path: "/s", user: null });
  });

  it("a query token sets a host-only cookie (no Domain), which then opens that name and no other", async () => {
    const { url, token } = await sb.createConnectToken({ port: APP });
    const redirect = await send(`${url}/page?sbx_token=${token}`);
    expect(redirect.status).toBe(302);
    const setCookie = String(redirect.headers["set-cookie"]);
    expect(setCookie).toBe(`sbx_${sb.id}_${APP}=${token}; Path=/; HttpOnly; SameSite=Lax`);
    const cookie = setCookie.split(";")[0] as string;
    expect((await send(`${url}/page`, { headers: { cookie } })).status).toBe(200);
    expect((await send(`${fakeUrl}/`, { host: host(other.id, APP, true), headers: { cookie } })).status).toBe(401);
  });

  it("WebSockets through a tunnel's and a gateway's name: upgraded once the app says so", async () => {
    const open = (url: string, options: WebSocket.ClientOptions = {}) =>
      new Promise<{ hello: Record<string, unknown>; echo: string }>((resolve, reject) => {
        const ws = new WebSocket(url, { lookup: toLoopback, ...options });
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
    const tunnel = (await sb.tunnels())[WS];
    const viaTunnel = await open(`ws://${tunnel?.host}:${tunnel?.port}/socket`);
    expect(viaTunnel).toEqual({ hello: { host: `${tunnel?.host}:${fakePort}`, user: null }, echo: "ping" });
    const { url, token } = await sb.createConnectToken({ port: WS, userMetadata: { user: "ada" } });
    const wsUrl = url.replace(/^http/, "ws");
    await expect(open(wsUrl)).rejects.toThrow("status 401");
    const viaGateway = await open(`${wsUrl}/?sbx_token=${token}`);
    expect(viaGateway.hello).toMatchObject({ user: '{"user":"ada"}' });
    // The cookie lets in a page of the name's own origin, not another's (another sandbox's page).
    const cookie = `sbx_${sb.id}_${WS}=${token}`;
    const own = await open(wsUrl, { headers: { cookie }, origin: new URL(url).origin });
    expect(own.hello).toMatchObject({ user: '{"user":"ada"}' });
    await expect(
      open(wsUrl, { headers: { cookie }, origin: `http://${host(other.id, APP)}:${fakePort}` }),
    ).rejects.toThrow("status 401");
    await expect(open(`ws://${host(sb.id, 9001)}:${fakePort}/`)).rejects.toThrow("status 404");
  });

  it("HTTP/2 (:authority) reaches the app as HTTP/1.1; the API shares the session", async () => {
    const session = http2Connect(fakeUrl, { lookup: toLoopback });
    try {
      const ask = (headers: Record<string, string>, body?: string) =>
        new Promise<{ status: number; headers: Record<string, unknown>; text: string }>((resolve, reject) => {
          const stream = session.request(headers);
          let text = "";
          let head: Record<string, unknown> = {};
          stream.setEncoding("utf8");
          stream.on("response", (h) => {
            head = h;
          });
          stream.on("data", (d: string) => {
            text += d;
          });
          stream.on("end", () => resolve({ status: Number(head[":status"]), headers: head, text }));
          stream.on("error", reject);
          stream.end(body);
        });
      const viaTunnel = await ask({ ":authority": host(sb.id, APP), ":path": "/h2?y=2", cookie: "a=1" });
      expect(viaTunnel.status).toBe(200);
      expect(JSON.parse(viaTunnel.text)).toMatchObject({ host: host(sb.id, APP), path: "/h2?y=2", cookie: "a=1" });
      // A header HTTP/2 cannot carry is left out rather than failing the answer.
      const settings = await ask({ ":authority": host(sb.id, APP), ":path": "/h2-settings" });
      expect(settings.status).toBe(200);
      expect(settings.text).toBe("ok");
      expect(settings.headers["http2-settings"]).toBeUndefined();
      const posted = await ask(
        { ":authority": host(sb.id, APP), ":path": "/post", ":method": "POST", "content-type": "text/plain" },
        "body over h2",
      );
      expect(JSON.parse(posted.text)).toMatchObject({ path: "/post", body: "body over h2" });
      const api = await ask(
        {
          ":authority": DOMAIN,
          ":path": "/sbx.v1.ImageService/ListImages",
          ":method": "POST",
          "content-type": "application/json",
        },
        "{}",
      );
      expect(api.status).toBe(200);
      const { token } = await sb.createConnectToken({ port: APP, userMetadata: { user: "h2" } });
      const withToken = await ask({
        ":authority": host(sb.id, APP, true),
        ":path": "/t",
        authorization: `Bearer ${token}`,
      });
      expect(JSON.parse(withToken.text)).toMatchObject({ path: "/t", user: '{"user":"h2"}' });
    } finally {
      session.destroy();
    }
    // A sandbox's name that leads nowhere, over HTTP/2 too.
    const refused = http2Connect(fakeUrl);
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const stream = refused.request({ ":authority": host("sb-00000000000000000000", APP), ":path": "/" });
        stream.on("response", (h) => resolve(Number(h[":status"])));
        stream.on("error", reject);
        stream.end();
      });
      expect(status).toBe(404);
    } finally {
      refused.destroy();
    }
  });

  it("requests let through count as in flight, refused ones do not (the cap on silent connections drops them)", async () => {
    const capped = createFakeServer({ tunnelDomain: DOMAIN, tunnelScheme: "http" });
    try {
      const { port } = await capped.listen({ connections: { maxSilentConnectionsPerAddress: 2 } });
      capped.onPort(APP, () => new Response("ok"));
      const box = await new SandboxClient({ transport: capped.transport }).sandboxes.create({ ports: [APP] });
      /** A keep-alive connection that sent one request to `name` and got its answer's status line. */
      const connection = (name: string) =>
        new Promise<{ socket: ReturnType<typeof netConnect>; status: string; closed: Promise<void> }>(
          (resolve, reject) => {
            const socket = netConnect(port, "127.0.0.1");
            const closed = new Promise<void>((done) => socket.once("close", () => done()));
            socket.once("data", (d) => resolve({ socket, status: String(d).split("\r\n")[0] as string, closed }));
            socket.on("error", reject);
            socket.write(`GET / HTTP/1.1\r\nHost: ${name}\r\n\r\n`);
          },
        );
      // Refused (401, 404): still silent, so a third connection from the address drops the oldest.
      const refused = [await connection(host(box.id, APP, true)), await connection(host(box.id, 1))];
      expect(refused.map((c) => c.status)).toEqual(["HTTP/1.1 401 Unauthorized", "HTTP/1.1 404 Not Found"]);
      const third = await connection(host(box.id, APP));
      await refused[0]?.closed;
      // Let through: served connections are not silent, and stay open for their next request.
      const served = [third, await connection(host(box.id, APP))];
      const last = await connection(host(box.id, APP));
      expect([...served, last].map((c) => c.status)).toEqual(Array(3).fill("HTTP/1.1 200 OK"));
      const again = await new Promise<string>((resolve) => {
        served[0]?.socket.once("data", (d) => resolve(String(d).split("\r\n")[0] as string));
        served[0]?.socket.write(`GET / HTTP/1.1\r\nHost: ${host(box.id, APP)}\r\n\r\n`);
      });
      expect(again).toBe("HTTP/1.1 200 OK");
      for (const c of [...refused, ...served, last]) c.socket.destroy();
    } finally {
      await capped.close();
    }
  });

  it("https (the default): URLs with no port, a Secure __Host- cookie", async () => {
    const tls = createFakeServer({ tunnelDomain: DOMAIN });
    try {
      const { url: apiUrl } = await tls.listen();
      tls.onPort(APP, () => new Response("ok"));
      const tlsClient = new SandboxClient({ transport: tls.transport });
      const box = await tlsClient.sandboxes.create({ ports: [APP] });
      expect((await box.tunnels())[APP]).toEqual({
        host: host(box.id, APP),
        port: 443,
        url: `https://${host(box.id, APP)}`,
      });
      const { url, token } = await box.createConnectToken({ port: APP });
      expect(url).toBe(`https://${host(box.id, APP, true)}`);
      // (The server itself speaks plain HTTP: a TLS proxy would be in front.)
      const redirect = await send(`${apiUrl}/?sbx_token=${token}`, { host: new URL(url).host });
      expect(redirect.headers["set-cookie"]).toEqual([
        `__Host-sbx_${box.id}_${APP}=${token}; Path=/; HttpOnly; SameSite=Lax; Secure`,
      ]);
      await tlsClient.close();
    } finally {
      await tls.close();
    }
  });

  it("a bad tunnel domain is an InvalidArgument error at creation", () => {
    for (const options of [
      { tunnelDomain: "*.example.com" },
      { tunnelDomain: "exa mple.com" },
      { tunnelDomain: "x.dev", tunnelPublicPort: 0 },
      { tunnelScheme: "http" as const },
    ]) {
      let caught: unknown;
      try {
        createFakeServer(options);
      } catch (error) {
        caught = error;
      }
      expect(caught, JSON.stringify(options)).toBeInstanceOf(ConnectError);
      expect((caught as ConnectError).code).toBe(Code.InvalidArgument);
    }
  });
});
