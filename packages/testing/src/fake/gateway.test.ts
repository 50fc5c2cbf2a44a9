// The token gateway (server-kit's, as the sbx server mounts it) in front of the fake's ports,
// over real listeners: Node's fetch and WebSockets through it, every way a token is refused.
import { createServer } from "node:http";
import { connect as netConnect } from "node:net";
import { Duplex } from "node:stream";
import { type Sandbox, SandboxClient } from "@sbx/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { createFakeServer, type FakeServer } from "../index.js";

const ECHO = 8080;
const WS = 9000;

describe("the token gateway in front of the fake's ports", () => {
  let fake: FakeServer;
  let client: SandboxClient;
  let sb: Sandbox;
  let other: Sandbox;

  beforeAll(async () => {
    fake = createFakeServer();
    await fake.listen();
    client = new SandboxClient({ transport: fake.transport });
    fake.onPort(ECHO, async (request, { sandboxId }) =>
      Response.json({
        sandboxId,
        path: new URL(request.url).pathname + new URL(request.url).search,
        user: request.headers.get("x-verified-user-data"),
        authorization: request.headers.get("authorization"),
        cookie: request.headers.get("cookie"),
        body: request.method === "GET" || request.method === "HEAD" ? "" : await request.text(),
      }),
    );
    // A WebSocket echo server as an app would run one: it says what it was given, then echoes.
    const wss = new WebSocketServer({ noServer: true });
    fake.onPortConnection(WS, (connection) => {
      const app = createServer();
      app.on("upgrade", (req, socket, head) =>
        wss.handleUpgrade(req, socket, head, (ws) => {
          ws.send(JSON.stringify({ user: req.headers["x-verified-user-data"] ?? null, url: req.url }));
          ws.on("message", (data, binary) => ws.send(data, { binary }));
        }),
      );
      app.emit("connection", Duplex.fromWeb(connection as Parameters<typeof Duplex.fromWeb>[0]));
    });
    sb = await client.sandboxes.create();
    other = await client.sandboxes.create();
  });
  afterAll(async () => {
    await client.close();
    await fake.close();
  });

  it("refuses a request without a token, with a wrong, another sandbox's or another port's token: 401", async () => {
    const { url, token } = await sb.createConnectToken({ port: ECHO });
    const elsewhere = await other.createConnectToken({ port: ECHO });
    const otherPort = await sb.createConnectToken({ port: WS });
    const status = async (headers: Record<string, string> = {}, path = "/") =>
      (await fetch(new URL(path, url), { headers })).status;
    expect(await status()).toBe(401);
    expect(await status({ authorization: "Bearer nope" })).toBe(401);
    expect(await status({ authorization: `Bearer ${token.slice(0, -2)}xx` })).toBe(401);
    expect(await status({ authorization: `Bearer ${elsewhere.token}` })).toBe(401);
    expect(await status({ authorization: `Bearer ${otherPort.token}` })).toBe(401);
    expect(await status({ cookie: `sbx_${sb.id}_${ECHO}=${elsewhere.token}` })).toBe(401);
    expect(await status({}, `/?sbx_token=${elsewhere.token}`)).toBe(401);
    const refused = await fetch(url);
    expect(await refused.text()).toMatch(/^401 Unauthorized: a token is required/);
    expect(await status({ authorization: `Bearer ${token}` })).toBe(200);
  });

  it("an expired service token is refused; the service's fetch gets a new one", async () => {
    const svc = await sb.service(ECHO, { expiresInMs: 1_000 });
    const first = await svc.token();
    const expiresAtMs = JSON.parse(Buffer.from(first.split(".")[1] ?? "", "base64url").toString()).exp * 1000;
    expect((await fetch(svc.url, { headers: { authorization: `Bearer ${first}` } })).status).toBe(200);
    while (Date.now() <= expiresAtMs) await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await fetch(svc.url, { headers: { authorization: `Bearer ${first}` } })).status).toBe(401);
    const answer = await svc.fetch("/later");
    expect(answer.status).toBe(200);
    expect(await svc.token()).not.toBe(first);
  });

  it("a query token is answered with an HttpOnly cookie and a redirect without it; the cookie then opens the port", async () => {
    const { url, token } = await sb.createConnectToken({ port: ECHO, userMetadata: { user: "ada" } });
    const redirect = await fetch(`${url}/page?a=1&sbx_token=${token}&b=2`, { redirect: "manual" });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get("location")).toBe("/page?a=1&b=2");
    const setCookie = redirect.headers.get("set-cookie") ?? "";
    expect(setCookie).toBe(`sbx_${sb.id}_${ECHO}=${token}; Path=/; HttpOnly; SameSite=Lax`);
    const cookie = setCookie.split(";")[0] ?? "";
    // Another sandbox's cookie (a browser sends every cookie of the host) never reaches the app either.
    const elsewhere = await other.createConnectToken({ port: ECHO });
    const seen = await (
      await fetch(`${url}/page?a=1`, {
        headers: { cookie: `theme=dark; ${cookie}; sbx_${other.id}_${ECHO}=${elsewhere.token}; lang=en` },
      })
    ).json();
    expect(seen).toMatchObject({ path: "/page?a=1", cookie: "theme=dark; lang=en", user: '{"user":"ada"}' });
    // A POST with a query token is passed on (no redirect), the token taken out of the URL.
    const posted = await (await fetch(`${url}/form?sbx_token=${token}`, { method: "POST", body: "hi" })).json();
    expect(posted).toMatchObject({ path: "/form", body: "hi", user: '{"user":"ada"}' });
  });

  it("X-Verified-User-Data: a connect token's metadata is injected, the caller's own dropped; Bearer stripped", async () => {
    const { url, token } = await sb.createConnectToken({ port: ECHO, userMetadata: { user: "ada", role: "admin" } });
    const seen = await (
      await fetch(`${url}/x`, {
        headers: { authorization: `Bearer ${token}`, "x-verified-user-data": '{"user":"mallory"}' },
      })
    ).json();
    expect(seen).toMatchObject({ sandboxId: sb.id, user: '{"user":"ada","role":"admin"}', authorization: null });
    // No metadata: no header at all, whatever the caller sent.
    const bare = await sb.createConnectToken({ port: ECHO });
    const none = await (
      await fetch(bare.url, { headers: { authorization: `Bearer ${bare.token}`, "X-Verified-User-Data": "forged" } })
    ).json();
    expect(none.user).toBeNull();
    // Any JSON, as one ASCII line (a header carries no line breaks nor, safely, UTF-8): the same value.
    const wide = { name: "Zoë 中文 🚀", lines: "a\nb" };
    const unicode = await sb.createConnectToken({ port: ECHO, userMetadata: wide });
    const got = await (await fetch(unicode.url, { headers: { authorization: `Bearer ${unicode.token}` } })).json();
    expect(JSON.parse(got.user)).toEqual(wide);
    // A token in the cookie leaves the app's own Authorization header alone.
    const own = await (
      await fetch(url, { headers: { cookie: `sbx_${sb.id}_${ECHO}=${token}`, authorization: "Basic YXBwOmFwcA==" } })
    ).json();
    expect(own).toMatchObject({ authorization: "Basic YXBwOmFwcA==", cookie: null });
  });

  it("keeps the client's connection alive across requests", async () => {
    const { url, token } = await sb.createConnectToken({ port: ECHO });
    const { request } = await import("node:http");
    const { Agent } = await import("node:http");
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    const get = () =>
      new Promise<number>((resolve, reject) => {
        const req = request(`${url}/k`, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
          sockets.add(req.socket);
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        req.end();
      });
    expect([await get(), await get(), await get()]).toEqual([200, 200, 200]);
    expect(sockets.size).toBe(1);
    agent.destroy();
  });

  it("a body goes on with its length whatever Connection names; a cookie POST from another port's page: 403", async () => {
    const { url, token } = await sb.createConnectToken({ port: ECHO, userMetadata: { user: "ada" } });
    const { hostname, port } = new URL(url);
    // (Without its Content-Length a DELETE's body would follow the request as bytes of its own.)
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = netConnect(Number(port), hostname);
      let got = "";
      socket.setEncoding("utf8");
      socket.on("data", (d: string) => {
        got += d;
      });
      socket.on("close", () => resolve(got));
      socket.on("error", reject);
      socket.write(
        `DELETE /d HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAuthorization: Bearer ${token}\r\n` +
          `Connection: close, content-length, x-verified-user-data\r\nContent-Length: 5\r\n\r\nHELLO`,
      );
    });
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(JSON.parse(/\{[^\r\n]*\}/.exec(answer)?.[0] ?? "")).toMatchObject({ body: "HELLO", user: '{"user":"ada"}' });
    // Listeners share one host: another port's page is same-site, and its form would post with the cookie.
    const cookie = `sbx_${sb.id}_${ECHO}=${token}`;
    const post = (origin: string) =>
      fetch(`${url}/act`, { method: "POST", body: "x", headers: { cookie, origin } }).then((r) => r.status);
    expect(await post(`http://${hostname}:${Number(port) + 1}`)).toBe(403);
    expect(await post(new URL(url).origin)).toBe(200);
  });

  it("a WebSocket passes through: Bearer from Node, the query token from a browser-style client", async () => {
    const { url, token } = await sb.createConnectToken({ port: WS, userMetadata: { user: "ada" } });
    const wsUrl = url.replace(/^http/, "ws");
    const ws = new WebSocket(`${wsUrl}/chat`, {
      headers: { authorization: `Bearer ${token}`, "x-verified-user-data": "forged" },
    });
    const messages: string[] = [];
    const next = () =>
      new Promise<string>((resolve, reject) => {
        ws.once("message", (data) => resolve(String(data)));
        ws.once("error", reject);
      });
    const hello = next();
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    messages.push(await hello);
    for (const text of ["one", "two", "x".repeat(100_000)]) {
      const echoed = next();
      ws.send(text);
      messages.push(await echoed);
    }
    ws.close();
    expect(JSON.parse(messages[0] ?? "")).toEqual({ user: '{"user":"ada"}', url: "/chat" });
    expect(messages.slice(1)).toEqual(["one", "two", "x".repeat(100_000)]);

    // Node's global WebSocket cannot send headers, as a browser's cannot: the query token.
    const browserLike = new globalThis.WebSocket(`${wsUrl}/b?sbx_token=${token}`);
    const first = await new Promise<string>((resolve, reject) => {
      browserLike.onmessage = (event) => resolve(String(event.data));
      browserLike.onerror = () => reject(new Error("the WebSocket failed"));
    });
    expect(JSON.parse(first)).toEqual({ user: '{"user":"ada"}', url: "/b" });
    browserLike.close();

    const refused = new WebSocket(`${wsUrl}/chat`);
    refused.on("error", () => {}); // (terminated before it opened, as it never will)
    const status = await new Promise<number>((resolve) =>
      refused.once("unexpected-response", (_, res) => resolve(res.statusCode ?? 0)),
    );
    expect(status).toBe(401);
    refused.terminate();
  });

  it("a port nothing listens on: 502 naming it; every token dies with its sandbox", async () => {
    const doomed = await client.sandboxes.create();
    const silent = await doomed.createConnectToken({ port: 8999 });
    const answer = await fetch(silent.url, { headers: { authorization: `Bearer ${silent.token}` } });
    expect(answer.status).toBe(502);
    expect(await answer.text()).toMatch(new RegExp(`nothing listens on port 8999 in sandbox ${doomed.id}`));
    const { url, token } = await doomed.createConnectToken({ port: ECHO });
    expect((await fetch(url, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    await doomed.terminate({ wait: true });
    await expect(fetch(url, { headers: { authorization: `Bearer ${token}` } })).rejects.toThrow();
  });
});
