/**
 * A tunnel domain (the server's `tunnelDomain`, the fake's too): sandbox ports by host name on
 * the API's own port, routed by server-kit's front door. Open tunnels `<port>-<id>.<domain>` and
 * token gateways `<port>-<id>-auth.<domain>` over HTTP/1.1, HTTP/2 (`:authority`) and
 * WebSockets; names that lead nowhere; the API beside them; connect tokens, service URLs and
 * their cookies. What reaches an app is in tunnel-domain-requests.ts, the front door's budget
 * for these requests in tunnel-domain-limits.ts. Each group starts servers of its own through
 * the target's `tunnelDomain` capability, and speaks HTTP through its wire client.
 */
import { deepEqual, equal, fieldsEqual, match, ok, rejects } from "../assert.js";
import type { Harness, TestApi } from "../target.js";
import type { TunnelDomainServers, WireClient, WireWebSocket } from "../tunnel-domain-target.js";
import { DOMAIN, HTTP_PORT, NO_SANDBOX, nameOf, RAW_PORT, T, useDomainServer, WS_PORT } from "./tunnel-domain-env.js";
import { tunnelDomainLimitCases } from "./tunnel-domain-limits.js";
import { tunnelDomainRequestCases } from "./tunnel-domain-requests.js";

/** A WebSocket's first message (the app's hello) and the echo of "ping"; then it closes. */
async function helloAndEcho(ws: WireWebSocket): Promise<{ hello: Record<string, unknown>; echo: string }> {
  try {
    const hello = JSON.parse(await ws.next()) as Record<string, unknown>;
    ws.send("ping");
    return { hello, echo: await ws.next() };
  } finally {
    ws.close();
  }
}

export function tunnelDomainCases(t: TestApi, h: Harness, servers: TunnelDomainServers): void {
  t.describe("tunnel domain", () => {
    // One server for the routing, gateway and request cases: `sb` exposes an HTTP app, a
    // WebSocket app and a request reader (outbound blocked), `other` the HTTP app alone.
    const env = useDomainServer(t, h, servers, { scheme: "http" }, async (s) => {
      const sb = await s.sandbox(
        [HTTP_PORT, WS_PORT, RAW_PORT],
        { [HTTP_PORT]: "http-echo", [WS_PORT]: "websocket-echo", [RAW_PORT]: "request-reader" },
        { blockNetwork: true },
      );
      const other = await s.sandbox([HTTP_PORT], { [HTTP_PORT]: "http-echo" });
      return { sb, other };
    });

    t.it(
      "tunnels are names on the API's own port: HTTP/1.1 by Host, whatever its case, a trailing dot or a port in it",
      async () => {
        const { sb, other, port, url, wire } = await env();
        const name = nameOf(sb.id, HTTP_PORT);
        const tunnels = await sb.tunnels();
        deepEqual({ ...tunnels[HTTP_PORT] }, { host: name, port, url: `http://${name}:${port}` });
        const answer = await wire.request(`${tunnels[HTTP_PORT]?.url}/hello?x=1`, {
          headers: { "x-verified-user-data": "forged", cookie: `sbx_${other.id}_${HTTP_PORT}=stolen; theme=dark` },
        });
        equal(answer.status, 200);
        equal(answer.headers["access-control-allow-origin"], undefined, "the app's answer, not the API's");
        deepEqual(answer.headers["set-cookie"], ["app=1; Path=/"]);
        fieldsEqual(JSON.parse(answer.text), {
          sandboxId: sb.id,
          port: HTTP_PORT,
          host: `${name}:${port}`,
          path: "/hello?x=1",
          user: null,
          cookie: "theme=dark",
        });
        for (const spelt of [name.toUpperCase(), `${name}.`, `${name}:443`]) {
          const seen = await wire.request(`${url}/case`, { host: spelt });
          equal(seen.status, 200, spelt);
          fieldsEqual(JSON.parse(seen.text), { sandboxId: sb.id, path: "/case" }, spelt);
        }
      },
      T,
    );

    t.it(
      "an unknown sandbox, a port it does not expose, a finished one: 404 alike; a malformed sandbox name: 400",
      async () => {
        const { sb, url, wire, sandbox } = await env();
        const ended = await sandbox([HTTP_PORT], { [HTTP_PORT]: "http-echo" });
        const endedName = (await ended.tunnels())[HTTP_PORT]?.host ?? "";
        equal((await wire.request(`${url}/`, { host: endedName })).status, 200);
        await ended.terminate({ wait: true });
        for (const name of [nameOf(NO_SANDBOX, HTTP_PORT), nameOf(sb.id, 8001), endedName]) {
          const answer = await wire.request(`${url}/`, { host: name });
          equal(answer.status, 404, name);
          equal(answer.text, "404 Not Found: no such sandbox port here\n", name);
        }
        for (const name of [
          `0-${sb.id}.${DOMAIN}`,
          `99999-${sb.id}.${DOMAIN}`,
          `${HTTP_PORT}-${sb.id}.x.${DOMAIN}`,
          `${HTTP_PORT}-${sb.id}_.${DOMAIN}:80`,
        ]) {
          const answer = await wire.request(`${url}/`, { host: name });
          equal(answer.status, 400, name);
          match(answer.text, /^400 Bad Request: /, name);
        }
      },
      T,
    );

    t.it(
      "several Host headers where one names a sandbox: 400",
      async () => {
        const { sb, port, wire } = await env();
        const connection = wire.connect(
          port,
          `GET / HTTP/1.1\r\nHost: ${DOMAIN}\r\nHost: ${nameOf(sb.id, HTTP_PORT)}\r\n\r\n`,
        );
        try {
          match(await connection.next(), /^HTTP\/1\.1 400 /);
        } finally {
          connection.destroy();
        }
      },
      T,
    );

    t.it(
      "the API answers on the same port (its own address, the domain, other names under it) and asks for its token",
      async () => {
        const { sb, other, client, url, token, wire } = await env();
        const listImages = (host: string | undefined, authorization: string | undefined) =>
          wire.request(`${url}/sbx.v1.ImageService/ListImages`, {
            method: "POST",
            headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
            body: "{}",
            ...(host ? { host } : {}),
          });
        for (const name of [undefined, DOMAIN, `${DOMAIN}.`, `api.${DOMAIN}:7420`, `api-${HTTP_PORT}.${DOMAIN}`]) {
          const answer = await listImages(name, `Bearer ${token}`);
          equal(answer.status, 200, name);
          equal(answer.headers["access-control-allow-origin"], "*", name);
        }
        equal((await listImages(DOMAIN, undefined)).status, 401);
        // The SDK's client, on the API's own address, sees the sandboxes.
        const listed: string[] = [];
        for await (const s of client.sandboxes.list()) listed.push(s.id);
        ok(listed.includes(sb.id) && listed.includes(other.id), `listed: ${listed}`);
        // A sandbox's name never reaches the API, whatever the path.
        const viaSandbox = await listImages(nameOf(sb.id, HTTP_PORT), undefined);
        fieldsEqual(JSON.parse(viaSandbox.text), { path: "/sbx.v1.ImageService/ListImages", body: "{}" });
      },
      T,
    );

    t.it(
      "connect tokens and service URLs: a name of the port's own, 401 without a token, the verified metadata with; not on another sandbox's names",
      async () => {
        const { sb, other, port, url, wire } = await env();
        const gateway = nameOf(sb.id, HTTP_PORT, true);
        const { url: tokenUrl, token } = await sb.createConnectToken({
          port: HTTP_PORT,
          userMetadata: { user: "ada" },
        });
        equal(tokenUrl, `http://${gateway}:${port}`);
        equal((await wire.request(tokenUrl)).status, 401);
        const answer = await wire.request(`${tokenUrl}/x`, {
          headers: { authorization: `Bearer ${token}`, "x-verified-user-data": '{"user":"mallory"}' },
        });
        equal(answer.status, 200);
        fieldsEqual(JSON.parse(answer.text), {
          sandboxId: sb.id,
          path: "/x",
          user: '{"user":"ada"}',
          authorization: null,
        });
        // This sandbox's token on the other's names: its gateway 401, a port it does not expose
        // 404, its open tunnel the app (with no user).
        const bearer = { authorization: `Bearer ${token}` };
        equal(
          (await wire.request(`${url}/`, { host: nameOf(other.id, HTTP_PORT, true), headers: bearer })).status,
          401,
        );
        equal((await wire.request(`${url}/`, { host: nameOf(other.id, WS_PORT), headers: bearer })).status, 404);
        const openTunnel = await wire.request(`${url}/`, { host: nameOf(other.id, HTTP_PORT), headers: bearer });
        fieldsEqual(JSON.parse(openTunnel.text), { sandboxId: other.id, user: null });
        // Service URLs are the same names.
        const svc = await sb.service(HTTP_PORT, { expiresInMs: 60_000 });
        equal(svc.url, `http://${gateway}:${port}`);
        equal((await wire.request(svc.url)).status, 401);
        const viaService = await wire.request(`${svc.url}/s`, {
          headers: { authorization: `Bearer ${await svc.token()}` },
        });
        fieldsEqual(JSON.parse(viaService.text), { path: "/s", user: null });
      },
      T,
    );

    t.it(
      "a query token sets a host-only cookie (no Domain), which then opens that name and no other",
      async () => {
        const { sb, other, url, wire } = await env();
        const { url: tokenUrl, token } = await sb.createConnectToken({ port: HTTP_PORT });
        const redirect = await wire.request(`${tokenUrl}/page?sbx_token=${token}`);
        equal(redirect.status, 302);
        const cookie = `sbx_${sb.id}_${HTTP_PORT}=${token}`;
        deepEqual(redirect.headers["set-cookie"], [`${cookie}; Path=/; HttpOnly; SameSite=Lax`]);
        equal((await wire.request(`${tokenUrl}/page`, { headers: { cookie } })).status, 200);
        equal(
          (await wire.request(`${url}/`, { host: nameOf(other.id, HTTP_PORT, true), headers: { cookie } })).status,
          401,
        );
      },
      T,
    );

    t.it(
      "a query token's redirect stays on the host, whatever slashes the path starts with",
      async () => {
        const { sb, port, wire } = await env();
        const { url: tokenUrl, token } = await sb.createConnectToken({ port: HTTP_PORT });
        const gateway = new URL(tokenUrl).host;
        for (const [path, location] of [
          ["/.//evil.example/x", "/evil.example/x"],
          ["//evil.example/x", "/x"],
          ["/page", "/page"],
        ] as const) {
          const answer = await wire.connect(
            port,
            `GET ${path}?sbx_token=${token}&a=1 HTTP/1.1\r\nHost: ${gateway}\r\nConnection: close\r\n\r\n`,
          ).closed;
          match(answer, /^HTTP\/1\.1 302 /, path);
          equal(/\r\nlocation: ([^\r]*)\r\n/i.exec(answer)?.[1], `${location}?a=1`, path);
        }
      },
      T,
    );

    t.it(
      "WebSockets through a tunnel's name and a gateway's: upgraded once the app says so; the cookie from the name's own origin only",
      async () => {
        const { sb, other, port, wire } = await env();
        const open = async (u: string, options?: Parameters<WireClient["websocket"]>[1]) =>
          helloAndEcho(await wire.websocket(u, options));
        const tunnel = (await sb.tunnels())[WS_PORT];
        deepEqual(await open(`ws://${tunnel?.host}:${tunnel?.port}/socket`), {
          hello: { host: `${tunnel?.host}:${port}`, user: null },
          echo: "ping",
        });
        const { url: tokenUrl, token } = await sb.createConnectToken({ port: WS_PORT, userMetadata: { user: "ada" } });
        const wsUrl = tokenUrl.replace(/^http/, "ws");
        await rejects(() => open(wsUrl), Error, /status 401/);
        deepEqual(await open(`${wsUrl}/?sbx_token=${token}`), {
          hello: { host: new URL(wsUrl).host, user: '{"user":"ada"}' },
          echo: "ping",
        });
        // The cookie lets in a page of the name's own origin, not another's (another sandbox's page).
        const cookie = `sbx_${sb.id}_${WS_PORT}=${token}`;
        const own = await open(wsUrl, { headers: { cookie }, origin: new URL(tokenUrl).origin });
        fieldsEqual(own.hello, { user: '{"user":"ada"}' });
        await rejects(
          () => open(wsUrl, { headers: { cookie }, origin: `http://${nameOf(other.id, HTTP_PORT)}:${port}` }),
          Error,
          /status 401/,
        );
        await rejects(() => open(`ws://${nameOf(sb.id, 9001)}:${port}/`), Error, /status 404/);
      },
      T,
    );

    t.it(
      "HTTP/2 (:authority) reaches the app as HTTP/1.1; the API shares the session",
      async () => {
        const { sb, url, token, wire } = await env();
        const name = nameOf(sb.id, HTTP_PORT);
        const session = wire.http2(url);
        try {
          const viaTunnel = await session.request({ ":authority": name, ":path": "/h2?y=2", cookie: "a=1" }).answer;
          equal(viaTunnel.status, 200);
          fieldsEqual(JSON.parse(viaTunnel.text), { host: name, path: "/h2?y=2", cookie: "a=1" });
          // A header HTTP/2 cannot carry is left out rather than failing the answer.
          const settings = await session.request({ ":authority": name, ":path": "/h2-settings" }).answer;
          equal(settings.status, 200);
          equal(settings.text, "ok");
          equal(settings.headers["http2-settings"], undefined);
          const posted = await session.request(
            { ":authority": name, ":path": "/post", ":method": "POST", "content-type": "text/plain" },
            "body over h2",
          ).answer;
          fieldsEqual(JSON.parse(posted.text), { path: "/post", body: "body over h2" });
          const api = await session.request(
            {
              ":authority": DOMAIN,
              ":path": "/sbx.v1.ImageService/ListImages",
              ":method": "POST",
              "content-type": "application/json",
              authorization: `Bearer ${token}`,
            },
            "{}",
          ).answer;
          equal(api.status, 200);
          const { token: connectToken } = await sb.createConnectToken({
            port: HTTP_PORT,
            userMetadata: { user: "h2" },
          });
          const withToken = await session.request({
            ":authority": nameOf(sb.id, HTTP_PORT, true),
            ":path": "/t",
            authorization: `Bearer ${connectToken}`,
          }).answer;
          fieldsEqual(JSON.parse(withToken.text), { path: "/t", user: '{"user":"h2"}' });
        } finally {
          session.close();
        }
        // A sandbox's name that leads nowhere, over HTTP/2 too.
        const refused = wire.http2(url);
        try {
          equal(
            (await refused.request({ ":authority": nameOf(NO_SANDBOX, HTTP_PORT), ":path": "/" }).head).status,
            404,
          );
        } finally {
          refused.close();
        }
      },
      T,
    );

    tunnelDomainRequestCases(t, env);
  });

  t.describe("tunnel domain over https (the default scheme)", () => {
    const env = useDomainServer(t, h, servers, { scheme: "https" }, async (s) => ({
      box: await s.sandbox([HTTP_PORT]),
    }));
    t.it(
      "URLs with no port, and a Secure __Host- cookie",
      async () => {
        const { box, url, wire } = await env();
        const name = nameOf(box.id, HTTP_PORT);
        deepEqual({ ...(await box.tunnels())[HTTP_PORT] }, { host: name, port: 443, url: `https://${name}` });
        const { url: tokenUrl, token } = await box.createConnectToken({ port: HTTP_PORT });
        equal(tokenUrl, `https://${nameOf(box.id, HTTP_PORT, true)}`);
        // (The server itself speaks plain HTTP: a TLS proxy would be in front.)
        const redirect = await wire.request(`${url}/?sbx_token=${token}`, { host: new URL(tokenUrl).host });
        deepEqual(redirect.headers["set-cookie"], [
          `__Host-sbx_${box.id}_${HTTP_PORT}=${token}; Path=/; HttpOnly; SameSite=Lax; Secure`,
        ]);
      },
      T,
    );
  });

  tunnelDomainLimitCases(t, h, servers);
}
