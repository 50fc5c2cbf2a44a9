import { decodeJwt, decodeProtectedHeader, SignJWT, UnsecuredJWT } from "jose";
import { describe, expect, it } from "vitest";
import { MAX_USER_METADATA_BYTES } from "./limits.js";
import { IngressTokens, randomTokenKey, type TokenGrant } from "./tokens.js";

const T0 = 1_800_000_000_000;
const grant: TokenGrant = {
  sandboxId: "sb-abc",
  port: 8080,
  audience: "connect",
  userMetadata: '{"user":"ada"}',
  expiresInMs: 60_000,
};
const target = { sandboxId: "sb-abc", port: 8080 };

function clocked(key = randomTokenKey()) {
  let now = T0;
  const tokens = new IngressTokens(key, { now: () => now });
  return { tokens, key, advance: (ms: number) => (now += ms) };
}

const reasonOf = async (tokens: IngressTokens, token: string, expected = target) => {
  const check = await tokens.verify(token, expected);
  return check.ok ? "ok" : check.reason;
};

describe("ingress tokens", () => {
  it("a token verifies for its sandbox and port, carrying its audience and metadata", async () => {
    const { tokens } = clocked();
    const issued = await tokens.issue(grant);
    expect(issued.expiresAtMs).toBe(T0 + 60_000);
    const check = await tokens.verify(issued.token, target);
    expect(check).toMatchObject({
      ok: true,
      token: { sandboxId: "sb-abc", port: 8080, audience: "connect", userMetadata: '{"user":"ada"}' },
    });
    expect(decodeProtectedHeader(issued.token)).toEqual({ alg: "HS256", typ: "JWT" });
    expect(decodeJwt(issued.token)).toMatchObject({
      sub: "sb-abc",
      aud: "connect",
      sbx_port: 8080,
      exp: (T0 + 60_000) / 1000,
    });
  });

  it("a token expires at its exp; a lifetime is rounded up to the second, never down", async () => {
    const { tokens, advance } = clocked();
    const issued = await tokens.issue({ ...grant, expiresInMs: 1_500 });
    expect(issued.expiresAtMs).toBe(T0 + 2_000);
    advance(1_999);
    expect(await reasonOf(tokens, issued.token)).toBe("ok");
    advance(1);
    expect(await reasonOf(tokens, issued.token)).toBe("the token has expired");
  });

  it("expiresInMs 0: no exp, valid until its sandbox ends, then revoked with the sandbox's others", async () => {
    const { tokens, advance } = clocked();
    const forever = await tokens.issue({ ...grant, expiresInMs: 0 });
    expect(forever.expiresAtMs).toBe(0);
    expect(decodeJwt(forever.token).exp).toBeUndefined();
    const timed = await tokens.issue({ ...grant, audience: "service", userMetadata: undefined });
    const other = await tokens.issue({ ...grant, sandboxId: "sb-other" });
    advance(365 * 86_400_000);
    expect(await reasonOf(tokens, forever.token)).toBe("ok");
    tokens.revokeSandbox("sb-abc");
    expect(await reasonOf(tokens, forever.token)).toMatch(/revoked/);
    expect(await reasonOf(tokens, timed.token)).not.toBe("ok");
    expect(await reasonOf(tokens, other.token, { sandboxId: "sb-other", port: 8080 })).toMatch(/expired/);
    // A token issued after the end (the sandbox started again) works.
    const again = await tokens.issue({ ...grant, expiresInMs: 0 });
    expect(await reasonOf(tokens, again.token)).toBe("ok");
  });

  it("another sandbox, port or audience is refused", async () => {
    const { tokens } = clocked();
    const { token } = await tokens.issue(grant);
    expect(await reasonOf(tokens, token, { sandboxId: "sb-abd", port: 8080 })).toBe("the token is for another sandbox");
    expect(await reasonOf(tokens, token, { sandboxId: "sb-abc", port: 8081 })).toBe("the token is for another port");
    const service = await tokens.verify(token, { ...target, audiences: ["service"] });
    expect(service).toEqual({ ok: false, reason: "the token's aud does not match" });
  });

  it("a tampered payload or signature, another server's key, alg none and other algorithms are refused", async () => {
    const { tokens, key } = clocked();
    const { token } = await tokens.issue(grant);
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const flipped = `${signature.slice(0, -2)}${signature.at(-2) === "A" ? "B" : "A"}${signature.at(-1)}`;
    expect(await reasonOf(tokens, `${header}.${payload}.${flipped}`)).toBe("the token is not valid");
    const otherPort = Buffer.from(
      JSON.stringify({ ...decodeJwt(token), sbx_port: 8080, sub: "sb-abc", sbx_user: '{"user":"root"}' }),
    ).toString("base64url");
    expect(await reasonOf(tokens, `${header}.${otherPort}.${signature}`)).toBe("the token is not valid");
    const elsewhere = await new IngressTokens(randomTokenKey(), { now: () => T0 }).issue(grant);
    expect(await reasonOf(tokens, elsewhere.token)).toBe("the token is not valid");
    const claims = { ...decodeJwt(token) };
    const none = new UnsecuredJWT(claims).encode();
    expect(await reasonOf(tokens, none)).toBe("the token is not valid");
    // The same key under HS512: a valid signature, an algorithm not taken.
    const hs512 = await new SignJWT(claims).setProtectedHeader({ alg: "HS512" }).sign(new Uint8Array([...key, ...key]));
    expect(await reasonOf(tokens, hs512)).toBe("the token is not valid");
    for (const junk of ["", "a.b.c", "x".repeat(10_000), `${header}.${payload}`]) {
      expect(await reasonOf(tokens, junk)).not.toBe("ok");
    }
  });

  it("metadata is JSON of at most MAX_USER_METADATA_BYTES bytes; keys are at least 32 bytes", async () => {
    const { tokens } = clocked();
    const fits = JSON.stringify({ pad: "é".repeat((MAX_USER_METADATA_BYTES - 12) / 2) });
    expect(new TextEncoder().encode(fits).byteLength).toBeLessThanOrEqual(MAX_USER_METADATA_BYTES);
    await expect(tokens.issue({ ...grant, userMetadata: fits })).resolves.toBeTruthy();
    const over = JSON.stringify({ pad: "é".repeat(MAX_USER_METADATA_BYTES / 2) });
    await expect(tokens.issue({ ...grant, userMetadata: over })).rejects.toThrow(/longer than 4096 bytes/);
    await expect(tokens.issue({ ...grant, userMetadata: "not json" })).rejects.toThrow(/JSON/);
    await expect(tokens.issue({ ...grant, port: 0 })).rejects.toThrow(/invalid port 0/);
    await expect(tokens.issue({ ...grant, expiresInMs: -1 })).rejects.toThrow(/invalid lifetime/);
    expect(() => new IngressTokens(new Uint8Array(16))).toThrow(/at least 32 bytes/);
  });
});
