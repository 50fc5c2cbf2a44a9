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
});
