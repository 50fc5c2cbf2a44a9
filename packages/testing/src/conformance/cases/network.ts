/**
 * Networking (issue #18) as far as it is built: the validation every target shares (an
 * `InvalidError` before any request), readiness probes, the outbound policy as the API sees
 * it, `sb.connect`'s refusal of a port where nothing listens, and — where the target is the
 * fake listening on a port — tunnels, `sb.connect`, connect tokens and service URLs through
 * its scripted ports. Packets themselves are the real server's own
 * tests.
 */
import { deepEqual, equal, match, ok, rejects } from "../assert.js";
import type { FakeControls, Harness, TestApi } from "../target.js";
import { createCall, expectInvalid } from "./invalid-input.js";

const T = 30_000;

export function networkCases(t: TestApi, h: Harness): void {
  const { sdk } = h;
  const fake = h.target.fake;
  const invalid = expectInvalid(h);

  t.describe("network", () => {
    t.it(
      "create: CIDRs, ports and probes are checked before any request",
      async () => {
        const create = createCall(h);
        await invalid(create({ cidrAllowlist: ["10.1.2.3/8"] }), /host bits .* \(the range is 10\.0\.0\.0\/8\)/);
        await invalid(create({ cidrAllowlist: ["fe80::1%eth0"] }), /zone ids are not allowed/);
        await invalid(create({ cidrAllowlist: ["10.0.0.0/33"] }), /at most 32/);
        await invalid(create({ cidrAllowlist: ["example.com"] }), /invalid CIDR "example.com"/);
        await invalid(create({ cidrAllowlist: ["10.0.0.0/8", "2001:db8::1/32"] }), /host bits/);
        await invalid(create({ cidrAllowlist: [] }), /cidrAllowlist is empty/);
        await invalid(create({ cidrAllowlist: [42 as unknown as string] }));
        await invalid(
          create({ blockNetwork: true, cidrAllowlist: ["10.0.0.0/8"] }),
          /cannot be used with block_network/,
        );
        await invalid(create({ ports: [0] }), /invalid port 0/);
        await invalid(create({ ports: [65_536] }), /invalid port 65536/);
        await invalid(create({ ports: [8000, 8001, 8000] }), /port 8000 is listed twice/);
        await invalid(create({ ports: [80.5] }));
        await invalid(async () => sdk.Probe.tcp(0));
        await invalid(async () => sdk.Probe.tcp(70_000));
        await invalid(async () => sdk.Probe.exec([]));
        await invalid(async () => sdk.Probe.exec(["true"], { intervalMs: 0 }));
        await invalid(async () => sdk.Probe.tcp(8000, { intervalMs: 60_001 }));
        await invalid(create({ readinessProbe: { kind: "http" } as never }));
      },
      T,
    );

    t.it(
      "update, tokens and connections: checked before any request",
      async () => {
        const sb = await h.sandbox();
        await invalid(() => sb.update({}), /needs blockNetwork or cidrAllowlist/);
        await invalid(() => sb.update({ cidrAllowlist: ["10.0.0.1/8"] }), /host bits/);
        await invalid(() => sb.update({ blockNetwork: true, cidrAllowlist: ["10.0.0.0/8"] }), /block_network/);
        await invalid(() => sb.createConnectToken({ port: 0 }), /invalid port 0/);
        await invalid(() => sb.createConnectToken({ userMetadata: "not json" }), /JSON/);
        await invalid(() => sb.createConnectToken({ userMetadata: { pad: "x".repeat(5000) } }), /4096/);
        await invalid(() => sb.service(70_000), /invalid port 70000/);
        await invalid(() => sb.service(8000, { expiresInMs: 10 }), /expiresInMs/);
        await invalid(() => sb.connect(-1), /invalid port -1/);
        await invalid(() => sb.tunnel(5432, { localPort: 1e6 }), /invalid localPort/);
        await invalid(() => sb.tunnels({ timeoutMs: -1 }));
      },
      T,
    );

    t.it(
      "sb.connect to a port where nothing listens: TunnelError naming the port",
      async () => {
        const sb = await h.sandbox();
        const error = await rejects(() => sb.connect(18_098), sdk.TunnelError);
        equal(error.code, "tunnel");
        equal(error.port, 18_098);
        match(error.message, /18098/);
      },
      T,
    );

    t.it(
      "waitUntilReady: without a probe a running sandbox is ready at once",
      async () => {
        const sb = await h.sandbox();
        await sb.waitUntilReady({ timeoutMs: 20_000 });
      },
      T,
    );

    t.it(
      "an exec probe: not ready (TimeoutError) until its command exits 0, then ready",
      async () => {
        const sb = await h.sandbox({ readinessProbe: sdk.Probe.exec(["cat", "/tmp/ready"], { intervalMs: 50 }) });
        const early = await rejects(() => sb.waitUntilReady({ timeoutMs: 300 }), sdk.TimeoutError);
        equal(early.code, "timeout");
        await sb.write("/tmp/ready", "yes\n");
        await sb.waitUntilReady({ timeoutMs: 20_000 });
        // Ready stays ready: the probe passed once.
        await sb.filesystem.remove("/tmp/ready");
        await sb.waitUntilReady({ timeoutMs: 20_000 });
      },
      T,
    );

    t.it(
      "waitUntilReady on a sandbox that ended before it was ready throws its end",
      async () => {
        const sb = await h.sandbox({ readinessProbe: sdk.Probe.exec(["cat", "/nonexistent/ready"]) });
        await sb.terminate({ wait: true });
        await rejects(() => sb.waitUntilReady({ timeoutMs: 20_000 }), sdk.SandboxTerminatedError);
      },
      T,
    );

    t.it(
      "ports with blockNetwork are accepted: reached through the server, reaching nothing",
      async () => {
        const sb = await h.sandbox({ blockNetwork: true, ports: [8000, 8001] });
        equal(await sb.poll(), null);
      },
      T,
    );

    t.it(
      "update replaces the outbound policy of a running sandbox",
      async () => {
        const sb = await h.sandbox({ cidrAllowlist: ["10.0.0.0/8"] });
        await sb.update({ blockNetwork: true });
        await sb.update({ cidrAllowlist: ["2001:DB8::/32", "192.168.0.0/16"] });
        await sb.update({ blockNetwork: false });
        await sb.terminate({ wait: true });
        const error = await rejects(() => sb.update({ blockNetwork: true }), sdk.SandboxError);
        equal(error.code, "failed_precondition");
      },
      T,
    );
  });

  if (h.target.endpoint) gatewayCases(t, h);
  if (fake && h.target.endpoint) portCases(t, h, fake);
}

/**
 * The token gateway as every target that serves HTTP has it (the same code on each): what it
 * refuses, and that a valid token gets through it to a port nothing listens on (502).
 */
function gatewayCases(t: TestApi, h: Harness): void {
  const silentPort = 18_099; // nothing listens here on any target
  t.describe("network: the token gateway", () => {
    t.it(
      "connect tokens: none, a forged or another sandbox's → 401; a valid one reaches the port (nothing there: 502)",
      async () => {
        const sb = await h.sandbox();
        const other = await h.sandbox();
        const { url, token } = await sb.createConnectToken({ port: silentPort, userMetadata: { user: "ada" } });
        const elsewhere = await other.createConnectToken({ port: silentPort });
        const status = async (headers: Record<string, string>) => (await fetch(url, { headers })).status;
        equal(await status({}), 401);
        equal(await status({ authorization: "Bearer not-a-token" }), 401);
        equal(await status({ authorization: `Bearer ${token.slice(0, -3)}abc` }), 401);
        equal(await status({ authorization: `Bearer ${elsewhere.token}` }), 401);
        equal(await status({ cookie: `sbx_${sb.id}_${silentPort}=${elsewhere.token}` }), 401);
        equal(await status({ authorization: `Bearer ${token}` }), 502);
        equal(await status({ cookie: `sbx_${sb.id}_${silentPort}=${token}` }), 502);
        // A query token on a GET is traded for a cookie, without reaching the port.
        const redirect = await fetch(`${url}/p?sbx_token=${token}`, { redirect: "manual" });
        equal(redirect.status, 302);
        equal(redirect.headers.get("location"), "/p");
        match(redirect.headers.get("set-cookie") ?? "", /; Path=\/; HttpOnly; SameSite=Lax$/);
        // Tokens die with their sandbox.
        await sb.terminate({ wait: true });
        const after = await fetch(url, { headers: { authorization: `Bearer ${token}` } }).then(
          (r) => r.status,
          () => "closed",
        );
        ok(after === 401 || after === "closed", `a dead sandbox's token opened its port: ${after}`);
      },
      T,
    );

    t.it(
      "service URLs: the URL needs the token; fetch carries one",
      async () => {
        const sb = await h.sandbox();
        const svc = await sb.service(silentPort, { expiresInMs: 60_000 });
        equal((await fetch(svc.url)).status, 401);
        equal((await svc.fetch("/")).status, 502);
        const other = await h.sandbox();
        const elsewhere = await other.service(silentPort, { expiresInMs: 60_000 });
        equal((await fetch(svc.url, { headers: { authorization: `Bearer ${await elsewhere.token()}` } })).status, 401);
      },
      T,
    );
  });
}

/** Tunnels, tokens and TCP probes through the fake's scripted ports (`fake.onPort`), over real listeners. */
function portCases(t: TestApi, h: Harness, fake: FakeControls): void {
  const { sdk } = h;
  // Ports of their own, so cases running at once in one fake do not meet.
  const echoPort = 18_080;
  t.describe("network through the fake's ports", () => {
    t.beforeAll(() => {
      fake.onPort(echoPort, async (request, { sandboxId, port }) => {
        const body = request.method === "POST" ? await request.text() : "";
        return Response.json({
          sandboxId,
          port,
          method: request.method,
          path: new URL(request.url).pathname + new URL(request.url).search,
          user: request.headers.get("x-verified-user-data"),
          authorization: request.headers.get("authorization"),
          cookie: request.headers.get("cookie"),
          body,
        });
      });
    });

    t.it(
      "sb.connect carries bytes both ways, with a half-close; several at once each get their own",
      async () => {
        const port = 18_082;
        fake.onPortConnection(port, async ({ readable, writable }) => {
          const writer = writable.getWriter();
          const reader = readable.getReader();
          let n = 0;
          for (let next = await reader.read(); !next.done; next = await reader.read()) {
            n += next.value.byteLength;
            await writer.write(next.value);
          }
          await writer.write(new TextEncoder().encode(`|${n}`));
          await writer.close();
        });
        const sb = await h.sandbox();
        const roundTrip = async (text: string) => {
          const conn = await sb.connect(port);
          const writer = conn.writable.getWriter();
          await writer.write(new TextEncoder().encode(text));
          await writer.close(); // the app sees its input end, and still answers
          let answer = "";
          const decoder = new TextDecoder();
          const reader = conn.readable.getReader();
          for (let next = await reader.read(); !next.done; next = await reader.read()) {
            answer += decoder.decode(next.value, { stream: true });
          }
          return answer;
        };
        const texts = Array.from({ length: 10 }, (_, i) => `connection ${i} `.repeat(1000 * (i + 1)));
        deepEqual(
          await Promise.all(texts.map(roundTrip)),
          texts.map((text) => `${text}|${new TextEncoder().encode(text).byteLength}`),
        );
      },
      T,
    );

    t.it(
      "a TCP probe passes once something listens on its port; tunnels wait for it",
      async () => {
        const port = 18_081;
        const sb = await h.sandbox({ ports: [port], readinessProbe: sdk.Probe.tcp(port, { intervalMs: 20 }) });
        await rejects(() => sb.waitUntilReady({ timeoutMs: 200 }), sdk.TimeoutError);
        await rejects(() => sb.tunnels({ timeoutMs: 200 }), sdk.TimeoutError);
        fake.onPort(port, () => new Response("up\n"));
        await sb.waitUntilReady({ timeoutMs: 20_000 });
        const tunnels = await sb.tunnels({ timeoutMs: 20_000 });
        const response = await fetch(tunnels[port]?.url ?? "");
        equal(await response.text(), "up\n");
      },
      T,
    );

    t.it(
      "a sandbox created without ports has no tunnels: an empty map, not an error",
      async () => {
        const sb = await h.sandbox();
        deepEqual(await sb.tunnels({ timeoutMs: 1_000 }), {});
      },
      T,
    );

    t.it(
      "tunnels: one per exposed port, answering HTTP from the port's handler; nothing listening → 502",
      async () => {
        const sb = await h.sandbox({ ports: [echoPort, 18_089], blockNetwork: true });
        const tunnels = await sb.tunnels();
        deepEqual(Object.keys(tunnels).sort(), [String(echoPort), "18089"]);
        const tunnel = tunnels[echoPort];
        ok(tunnel);
        equal(tunnel.url, `http://${tunnel.host}:${tunnel.port}`);
        const answer = await (await fetch(`${tunnel.url}/hello?x=1`, { method: "POST", body: "ping" })).json();
        deepEqual(
          [answer.sandboxId, answer.port, answer.method, answer.path, answer.body],
          [sb.id, echoPort, "POST", "/hello?x=1", "ping"],
        );
        const silent = await fetch(tunnels[18_089]?.url ?? "");
        equal(silent.status, 502);
        match(await silent.text(), /nothing listens on port 18089/);
      },
      T,
    );

    t.it(
      "connect tokens: Bearer, query parameter (→ cookie) or cookie; the app gets the verified metadata",
      async () => {
        const sb = await h.sandbox();
        const other = await h.sandbox();
        const { url, token } = await sb.createConnectToken({ port: echoPort, userMetadata: { user: "ada" } });
        equal((await fetch(url)).status, 401);
        equal((await fetch(url, { headers: { authorization: "Bearer wrong" } })).status, 401);
        const bearer = await fetch(`${url}/x`, {
          headers: { authorization: `Bearer ${token}`, "x-verified-user-data": '{"user":"mallory"}' },
        });
        const seen = await bearer.json();
        equal(seen.user, '{"user":"ada"}', "the caller's own X-Verified-User-Data is replaced");
        equal(seen.authorization, null, "the app never sees the token");
        equal(seen.sandboxId, sb.id);
        // A query token is answered with a redirect that sets the cookie, without the token.
        const redirect = await fetch(`${url}/page?sbx_token=${token}&keep=1`, { redirect: "manual" });
        equal(redirect.status, 302);
        equal(redirect.headers.get("location"), "/page?keep=1");
        const cookie = (redirect.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
        match(cookie, new RegExp(`^sbx_${sb.id}_${echoPort}=`));
        const byCookie = await (await fetch(`${url}/page`, { headers: { cookie: `${cookie}; theme=dark` } })).json();
        equal(byCookie.cookie, "theme=dark", "sbx cookies are stripped, the app's kept");
        // A token opens its own sandbox's port only.
        const elsewhere = await other.createConnectToken({ port: echoPort });
        equal((await fetch(elsewhere.url, { headers: { authorization: `Bearer ${token}` } })).status, 401);
        // It dies with its sandbox.
        await sb.terminate({ wait: true });
        await rejects(() => sb.createConnectToken({ port: echoPort }), sdk.SandboxError);
      },
      T,
    );

    t.it(
      "service URLs: fetch adds a token; without one → 401; browserUrl carries one",
      async () => {
        const sb = await h.sandbox();
        const svc = await sb.service(echoPort, { expiresInMs: 60_000 });
        equal((await fetch(svc.url)).status, 401);
        // A caller's own X-Verified-User-Data never reaches the app, even with no metadata to replace it.
        const seen = await (await svc.fetch("/api?q=1", { headers: { "x-verified-user-data": "forged" } })).json();
        deepEqual([seen.sandboxId, seen.path, seen.user], [sb.id, "/api?q=1", null]);
        const browser = new URL(await svc.browserUrl());
        equal(browser.searchParams.get("sbx_token"), await svc.token());
      },
      T,
    );
  });
}
