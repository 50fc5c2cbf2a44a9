import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { TunnelDomain, tunnelDomainOf, tunnelDomainProblem } from "./tunnel-domain.js";

const ID = "sb-0123456789abcdefghij";

describe("tunnel domains", () => {
  it("takes DNS names only, in any case and with a trailing dot", () => {
    for (const good of ["example.com", "Sbx.Example.COM.", "localhost", "xn--bcher-kva.example", "a-b.c0"]) {
      expect(tunnelDomainProblem(good), good).toBeUndefined();
    }
    expect(new TunnelDomain({ domain: "Sbx.Example.COM." }).name).toBe("sbx.example.com");
    const problems: [string, RegExp][] = [
      ["", /empty/],
      ["*.example.com", /without "\*\."/],
      ["exa mple.com", /not a DNS name/],
      ["example..com", /not a DNS name/],
      [".example.com", /not a DNS name/],
      ["-x.example.com", /not a DNS name/],
      ["x-.example.com", /not a DNS name/],
      ["under_score.example.com", /not a DNS name/],
      ["example.com:443", /not a DNS name/],
      ["https://example.com", /not a DNS name/],
      [`${"a".repeat(64)}.com`, /not a DNS name/],
      ["10.0.0.1", /an address/],
      [`${"a.".repeat(95)}com`, /longer than 189/],
    ];
    for (const [bad, why] of problems) expect(tunnelDomainProblem(bad), bad).toMatch(why);
  });

  it("a bad domain, scheme or port is an InvalidArgument error, and scheme or port need a domain", () => {
    const codeOf = (f: () => unknown) => {
      try {
        f();
      } catch (error) {
        return error instanceof ConnectError ? error.code : error;
      }
      return undefined;
    };
    expect(codeOf(() => new TunnelDomain({ domain: "not a name" }))).toBe(Code.InvalidArgument);
    expect(codeOf(() => new TunnelDomain({ domain: "x.dev", scheme: "ftp" as never }))).toBe(Code.InvalidArgument);
    expect(codeOf(() => new TunnelDomain({ domain: "x.dev", publicPort: 0 }))).toBe(Code.InvalidArgument);
    expect(codeOf(() => new TunnelDomain({ domain: "x.dev", publicPort: 65_536 }))).toBe(Code.InvalidArgument);
    expect(codeOf(() => tunnelDomainOf({ tunnelScheme: "http" }))).toBe(Code.InvalidArgument);
    expect(tunnelDomainOf({})).toBeUndefined();
  });

  it("names a port's tunnel and token gateway, with URLs on the public port (https by default)", () => {
    const https = new TunnelDomain({ domain: "example.com" });
    expect(https.hostName("tunnel", ID, 8000)).toBe(`8000-${ID}.example.com`);
    expect(https.hostName("gateway", ID, 8080)).toBe(`8080-${ID}-auth.example.com`);
    expect(https.endpoint(`8000-${ID}.example.com`, 7420)).toEqual({
      port: 443,
      url: `https://8000-${ID}.example.com`,
    });
    const proxied = new TunnelDomain({ domain: "example.com", publicPort: 8443 });
    expect(proxied.endpoint("h.example.com", 7420)).toEqual({ port: 8443, url: "https://h.example.com:8443" });
    // Plain HTTP: clients reach the server itself, on its own port unless told another.
    const direct = new TunnelDomain({ domain: "example.com", scheme: "http" });
    expect(direct.endpoint("h.example.com", 7420)).toEqual({ port: 7420, url: "http://h.example.com:7420" });
    expect(() => direct.endpoint("h.example.com", undefined)).toThrow(/not listening yet/);
    const port80 = new TunnelDomain({ domain: "example.com", scheme: "http", publicPort: 80 });
    expect(port80.endpoint("h.example.com", 7420)).toEqual({ port: 80, url: "http://h.example.com" });
    expect(() => https.hostName("tunnel", "SB-Upper", 1)).toThrow(/cannot be part of a host name/);
    expect(() => https.hostName("tunnel", "sb.x", 1)).toThrow(/cannot be part of a host name/);
  });

  it("reads a host back: case, a trailing dot and a port do not matter; other names are the API's", () => {
    const domain = new TunnelDomain({ domain: "example.com" });
    const tunnel = { kind: "sandbox", route: "tunnel", sandboxId: ID, port: 8000 };
    for (const host of [
      `8000-${ID}.example.com`,
      `8000-${ID.toUpperCase()}.EXAMPLE.com`,
      `8000-${ID}.example.com.`,
      `8000-${ID}.example.com:443`,
      `8000-${ID}.example.com.:7420`,
      `8000-${ID}.example.com:`,
    ]) {
      expect(domain.match(host), host).toEqual(tunnel);
    }
    expect(domain.match(`65535-${ID}-auth.example.com`)).toEqual({
      kind: "sandbox",
      route: "gateway",
      sandboxId: ID,
      port: 65_535,
    });
    for (const host of [
      "example.com",
      "example.com:7420",
      "api.example.com",
      "api-8000.example.com",
      "127.0.0.1:7420",
      "[::1]:7420",
      `8000-${ID}.example.org`,
      `8000-${ID}.notexample.com`,
      `8000-${ID}.example.com..`,
      "localhost",
    ]) {
      expect(domain.match(host), host).toEqual({ kind: "elsewhere" });
    }
    for (const host of [
      `0-${ID}.example.com`,
      `08000-${ID}.example.com`,
      `65536-${ID}.example.com`,
      `8000-.example.com`,
      `8000-${ID}-.example.com`,
      `8000-${ID}_x.example.com`,
      `8000-${ID}.sub.example.com`,
      `8000-${"a".repeat(60)}.example.com`,
      `8000-${ID}.example.com:https`,
      `8000-${ID}.example.com:123456`,
    ]) {
      expect(domain.match(host).kind, host).toBe("malformed");
    }
  });
});
