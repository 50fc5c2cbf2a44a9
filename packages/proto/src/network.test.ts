import { describe, expect, it } from "vitest";
import {
  canonicalCidrAllowlist,
  networkPolicyProblem,
  parseCidr,
  portsProblem,
  probeIntervalProblem,
} from "./network.js";

const canonical = (text: string) => {
  const parsed = parseCidr(text);
  if ("problem" in parsed) throw new Error(parsed.problem);
  return parsed.cidr;
};
const problem = (text: string) => {
  const parsed = parseCidr(text);
  return "problem" in parsed ? parsed.problem : undefined;
};

describe("parseCidr", () => {
  it("takes IPv4 ranges and bare addresses (one host)", () => {
    expect(canonical("10.0.0.0/8")).toBe("10.0.0.0/8");
    expect(canonical("192.168.1.7")).toBe("192.168.1.7/32");
    expect(canonical("0.0.0.0/0")).toBe("0.0.0.0/0");
    expect(canonical("255.255.255.255/32")).toBe("255.255.255.255/32");
    expect(parseCidr("10.1.0.0/16")).toStrictEqual({ family: 4, cidr: "10.1.0.0/16" });
  });

  it("takes IPv6 ranges in any spelling and answers RFC 5952's", () => {
    expect(parseCidr("2001:DB8::/32")).toStrictEqual({ family: 6, cidr: "2001:db8::/32" });
    expect(canonical("2001:0db8:0000:0000:0000:0000:0000:0001")).toBe("2001:db8::1/128");
    expect(canonical("::/0")).toBe("::/0");
    expect(canonical("::1")).toBe("::1/128");
    expect(canonical("fe80::/10")).toBe("fe80::/10");
    // The longest run of zero groups is compressed, the first of equal runs; a single zero stays.
    expect(canonical("1:0:0:2:0:0:0:3")).toBe("1:0:0:2::3/128");
    expect(canonical("1:0:0:2:0:0:3:4")).toBe("1::2:0:0:3:4/128");
    expect(canonical("1:0:2:3:4:5:6:7")).toBe("1:0:2:3:4:5:6:7/128");
    expect(canonical("::ffff:10.0.0.1")).toBe("::ffff:a00:1/128");
    expect(canonical("1:2:3:4:5:6:7::")).toBe("1:2:3:4:5:6:7:0/128");
  });

  it("refuses host bits past the prefix, naming the range that was probably meant", () => {
    expect(problem("10.1.2.3/8")).toBe(
      'invalid CIDR "10.1.2.3/8": host bits are set past the /8 prefix (the range is 10.0.0.0/8)',
    );
    expect(problem("2001:db8::1/32")).toContain("(the range is 2001:db8::/32)");
  });

  it("refuses zone ids", () => {
    expect(problem("fe80::1%eth0")).toBe('invalid CIDR "fe80::1%eth0": zone ids are not allowed');
    expect(problem("fe80::%1/64")).toContain("zone ids are not allowed");
  });

  it("refuses what is not an address or a prefix", () => {
    for (const bad of [
      "",
      "10.0.0",
      "10.0.0.0.0",
      "256.0.0.0/8",
      "010.0.0.0/8",
      "10.0.0.0/33",
      "10.0.0.0/",
      "10.0.0.0/08",
      "10.0.0.0/-1",
      "10.0.0.0/ 8",
      " 10.0.0.0/8",
      "::/129",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "12345::",
      "1.2.3.4::",
      ":1",
      "example.com",
      "10.0.0.0/8/8",
      "x".repeat(65),
    ]) {
      expect(problem(bad), bad).toMatch(/^invalid CIDR /);
    }
  });
});

describe("network rules", () => {
  it("an allowlist in canonical form, duplicates dropped, the first problem otherwise", () => {
    expect(canonicalCidrAllowlist(["10.0.0.0/8", "10.0.0.0/8", "2001:DB8::/32"])).toStrictEqual([
      "10.0.0.0/8",
      "2001:db8::/32",
    ]);
    expect(canonicalCidrAllowlist(["10.0.0.0/8", "nope"])).toStrictEqual({
      problem: 'invalid CIDR "nope": not an IPv4 or IPv6 address',
    });
    expect(canonicalCidrAllowlist(Array.from({ length: 257 }, (_, i) => `10.0.${i % 256}.0/24`))).toHaveProperty(
      "problem",
    );
  });

  it("an allowlist with block_network contradicts itself", () => {
    expect(networkPolicyProblem(true, ["10.0.0.0/8"])).toMatch(/cannot be used with block_network/);
    expect(networkPolicyProblem(true, [])).toBeUndefined();
    expect(networkPolicyProblem(false, ["10.0.0.0/8"])).toBeUndefined();
  });

  it("ports: 1-65535, each once", () => {
    expect(portsProblem([80, 8080, 65_535, 1])).toBeUndefined();
    expect(portsProblem([0])).toMatch(/invalid port 0/);
    expect(portsProblem([65_536])).toMatch(/invalid port 65536/);
    expect(portsProblem([1.5])).toMatch(/invalid port 1.5/);
    expect(portsProblem([80, 81, 80])).toBe("port 80 is listed twice in ports");
    expect(portsProblem(Array.from({ length: 65 }, (_, i) => i + 1))).toMatch(/more than the limit of 64/);
  });

  it("probe intervals", () => {
    expect(probeIntervalProblem(0)).toBeUndefined();
    expect(probeIntervalProblem(100)).toBeUndefined();
    expect(probeIntervalProblem(60_001)).toMatch(/invalid probe interval/);
    expect(probeIntervalProblem(-1)).toMatch(/invalid probe interval/);
  });
});
