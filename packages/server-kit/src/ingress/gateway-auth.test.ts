import { describe, expect, it } from "vitest";
import { authorizeRequest, headerJson } from "./gateway-auth.js";
import { IngressTokens, randomTokenKey } from "./tokens.js";

const target = { sandboxId: "sb-1", port: 8080 };

describe("the gateway's decision", () => {
  it("metadata reaches the app as one line of ASCII JSON of the same value", async () => {
    const metadata = '{\n  "name": "Zoë 中文 🚀",\n  "n": [1, 2]\n}';
    const header = headerJson(metadata);
    expect(header).toMatch(/^[\x20-\x7e]+$/);
    expect(JSON.parse(header)).toEqual(JSON.parse(metadata));
    const tokens = new IngressTokens(randomTokenKey());
    const { token } = await tokens.issue({ ...target, audience: "connect", userMetadata: metadata, expiresInMs: 0 });
    const decision = await authorizeRequest(
      { method: "GET", url: "/", headers: { authorization: `Bearer ${token}` } },
      target,
      tokens,
    );
    expect(decision).toMatchObject({ kind: "forward", headers: { "x-verified-user-data": header } });
  });

  it("takes the first token that verifies; a service token carries no user data", async () => {
    const tokens = new IngressTokens(randomTokenKey());
    const { token } = await tokens.issue({ ...target, audience: "service", expiresInMs: 60_000 });
    const decision = await authorizeRequest(
      {
        method: "POST",
        url: `/x?sbx_token=${token}`,
        headers: { authorization: "Bearer the-apps-own", "x-verified-user-data": "forged" },
      },
      target,
      tokens,
    );
    expect(decision).toMatchObject({ kind: "forward", url: "/x", headers: { authorization: "Bearer the-apps-own" } });
    expect(decision.kind === "forward" && "x-verified-user-data" in decision.headers).toBe(false);
  });

  it("an open tunnel (no tokens) forwards as it is, less sbx's cookies and any verified-user header", async () => {
    const decision = await authorizeRequest(
      {
        method: "GET",
        url: "/?a=1",
        headers: {
          cookie: "sbx_sb-9_80=t; a=b",
          "x-verified-user-data": "forged",
          x_verified_user_data: "forged",
          "x-verified_user-data": "forged",
        },
      },
      target,
      undefined,
    );
    expect(decision).toEqual({ kind: "forward", url: "/?a=1", headers: { cookie: "a=b" }, token: undefined });
  });

  it("an HTTP/2 request reaches the app as HTTP/1.1: no pseudo-headers, :authority as Host", async () => {
    const decision = await authorizeRequest(
      {
        method: "GET",
        url: "/p",
        headers: { ":method": "GET", ":path": "/p", ":scheme": "https", ":authority": "h.example.com", a: "b" },
      },
      target,
      undefined,
    );
    expect(decision).toMatchObject({ kind: "forward", headers: { host: "h.example.com", a: "b" } });
    expect(Object.keys(decision.kind === "forward" ? decision.headers : {}).sort()).toEqual(["a", "host"]);
  });

  it("over https the token cookie is Secure and __Host- prefixed, and only that one is taken", async () => {
    const tokens = new IngressTokens(randomTokenKey());
    const { token } = await tokens.issue({ ...target, audience: "service", expiresInMs: 60_000 });
    const https = { ...target, https: true };
    const redirect = await authorizeRequest({ method: "GET", url: `/?sbx_token=${token}`, headers: {} }, https, tokens);
    expect(redirect).toEqual({
      kind: "redirect",
      location: "/",
      setCookie: `__Host-sbx_sb-1_8080=${token}; Path=/; HttpOnly; SameSite=Lax; Secure`,
    });
    const withCookie = (cookie: string) =>
      authorizeRequest({ method: "GET", url: "/", headers: { cookie: `${cookie}; app=1` } }, https, tokens);
    expect(await withCookie(`__Host-sbx_sb-1_8080=${token}`)).toMatchObject({
      kind: "forward",
      headers: { cookie: "app=1" },
    });
    // One planted by a page on a sibling name (without the prefix browsers let it do that): not taken.
    expect((await withCookie(`sbx_sb-1_8080=${token}`)).kind).toBe("reject");
  });

  it("a WebSocket from a page of another origin is not let in by the cookie (a token it carries itself is)", async () => {
    const tokens = new IngressTokens(randomTokenKey());
    const { token } = await tokens.issue({ ...target, audience: "service", expiresInMs: 60_000 });
    const upgrade = (headers: Record<string, string>, url = "/") =>
      authorizeRequest({ method: "GET", url, headers, upgrade: true }, target, tokens);
    const cookie = `sbx_sb-1_8080=${token}`;
    const kinds = async (host: string, origins: (string | undefined)[]) =>
      Promise.all(origins.map(async (origin) => (await upgrade({ host, cookie, ...(origin ? { origin } : {}) })).kind));
    expect(
      await kinds("127.0.0.1:41234", [
        undefined,
        "http://127.0.0.1:41234",
        "http://127.0.0.1:41235",
        "http://localhost:41234",
        "null",
      ]),
    ).toEqual(["forward", "forward", "reject", "reject", "reject"]);
    // Behind a proxy, Host may or may not name the port.
    expect(
      await kinds("8080-sb-1-auth.example.com", [
        "https://8080-sb-1-auth.example.com",
        "https://8080-SB-1-auth.example.com.",
        "https://8080-sb-2-auth.example.com",
        "https://8000-sb-1.example.com",
      ]),
    ).toEqual(["forward", "forward", "reject", "reject"]);
    expect(
      await kinds("8080-sb-1-auth.example.com:443", [
        "https://8080-sb-1-auth.example.com",
        "https://8080-sb-1-auth.example.com:8443",
      ]),
    ).toEqual(["forward", "reject"]);
    // A token the request carries itself (a page had to be given it) is taken from any origin.
    expect(
      (await upgrade({ host: "127.0.0.1:41234", origin: "https://elsewhere.example" }, `/?sbx_token=${token}`)).kind,
    ).toBe("forward");
  });

  it("a cookie lets in a request that changes things only from the host's own origin (or a client that is not a browser)", async () => {
    const tokens = new IngressTokens(randomTokenKey());
    const { token } = await tokens.issue({ ...target, audience: "service", expiresInMs: 60_000 });
    const host = "8080-sb-1-auth.example.com";
    const status = async (method: string, headers: Record<string, string>) => {
      const decision = await authorizeRequest(
        { method, url: "/", headers: { host, cookie: `sbx_sb-1_8080=${token}`, ...headers } },
        target,
        tokens,
      );
      return decision.kind === "reject" ? decision.status : decision.kind;
    };
    expect(await status("POST", { origin: "https://8000-sb-2.example.com" })).toBe(403);
    expect(await status("POST", { origin: "null" })).toBe(403);
    expect(await status("PATCH", { "sec-fetch-site": "same-site" })).toBe(403);
    expect(await status("POST", { origin: `https://${host}`, "sec-fetch-site": "cross-site" })).toBe(403);
    expect(await status("POST", { origin: `https://${host}`, "sec-fetch-site": "same-origin" })).toBe("forward");
    expect(await status("POST", { "sec-fetch-site": "none" })).toBe("forward");
    expect(await status("DELETE", {})).toBe("forward");
    for (const method of ["GET", "HEAD", "OPTIONS"]) {
      expect(await status(method, { origin: "https://8000-sb-2.example.com", "sec-fetch-site": "same-site" })).toBe(
        "forward",
      );
    }
  });

  it("the app gets the host the request was routed by; a query token's redirect never leaves the host", async () => {
    const absolute = await authorizeRequest(
      { method: "GET", url: "http://user@8080-SB-1.example.com:80/p?q=1", headers: { host: "evil.example" } },
      target,
      undefined,
    );
    expect(absolute).toMatchObject({ kind: "forward", url: "/p?q=1", headers: { host: "8080-sb-1.example.com" } });
    const h2 = await authorizeRequest(
      { method: "GET", url: "/", headers: { ":authority": "8080-sb-1.example.com", host: "evil.example" } },
      target,
      undefined,
    );
    expect(h2).toMatchObject({ kind: "forward", headers: { host: "8080-sb-1.example.com" } });
    const tokens = new IngressTokens(randomTokenKey());
    const { token } = await tokens.issue({ ...target, audience: "service", expiresInMs: 60_000 });
    const location = async (path: string) => {
      const decision = await authorizeRequest(
        { method: "GET", url: `${path}?sbx_token=${token}`, headers: {} },
        target,
        tokens,
      );
      return decision.kind === "redirect" ? decision.location : decision.kind;
    };
    expect(await location("/.//evil.example/x")).toBe("/evil.example/x");
    expect(await location("/./\\\\evil.example")).toBe("/evil.example");
    expect(await location("//evil.example/x")).toBe("/x");
    expect(await location("/a//b")).toBe("/a//b");
  });
});
