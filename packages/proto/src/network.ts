/**
 * The contract's network rules, shared by the client, the server and the fake (hand-written):
 * CIDRs (parsed and put in canonical form), exposed ports, the outbound policy, readiness
 * probes. Each check answers a problem sentence, or undefined when the input is fine.
 */

/** Most ranges one `cidrAllowlist` may name (each is a rule the server keeps per sandbox). */
export const MAX_CIDR_ALLOWLIST = 256;
/** Most ports one sandbox may expose (each gets a listener on the server). */
export const MAX_EXPOSED_PORTS = 64;
/** A readiness probe's interval when none is given, and the longest one may be. */
export const DEFAULT_PROBE_INTERVAL_MS = 100;
export const MAX_PROBE_INTERVAL_MS = 60_000;

/** A CIDR parsed: its family and canonical text ("10.1.0.0/16", "2001:db8::/32"). */
export interface Cidr {
  readonly family: 4 | 6;
  readonly cidr: string;
}

/**
 * Parses an IPv4 or IPv6 range, "address/prefix" or a bare address (one host: /32, /128),
 * into its canonical text. Refused, with the reason: anything but those forms, IPv4 octets
 * with leading zeros (read as octal by some tools), zone ids ("fe80::1%eth0": a zone names an
 * interface of one machine, not a destination), a prefix past the family's length, and host
 * bits set past the prefix ("10.1.2.3/8": most likely a typo; masking it silently would allow
 * far more than was meant).
 */
export function parseCidr(text: string): Cidr | { readonly problem: string } {
  const fail = (why: string) => ({ problem: `invalid CIDR ${JSON.stringify(text)}: ${why}` });
  if (typeof text !== "string" || text.length === 0) return fail("it is empty");
  if (text.length > 64) return fail("it is longer than 64 characters");
  if (text.includes("%")) return fail("zone ids are not allowed");
  const slash = text.indexOf("/");
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  const family = addressText.includes(":") ? 6 : 4;
  const bits = family === 4 ? parseIPv4(addressText) : parseIPv6(addressText);
  if (typeof bits === "string") return fail(bits);
  const width = family === 4 ? 32 : 128;
  let prefix = width;
  if (prefixText !== undefined) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return fail("the prefix length must be a number");
    prefix = Number(prefixText);
    if (prefix > width) return fail(`the prefix length of an IPv${family} range is at most ${width}`);
  }
  const hostMask = (1n << BigInt(width - prefix)) - 1n;
  if ((bits & hostMask) !== 0n) {
    const network = bits & ~hostMask;
    const shown = family === 4 ? formatIPv4(network) : formatIPv6(network);
    return fail(`host bits are set past the /${prefix} prefix (the range is ${shown}/${prefix})`);
  }
  return { family, cidr: `${family === 4 ? formatIPv4(bits) : formatIPv6(bits)}/${prefix}` };
}

function parseIPv4(text: string): bigint | string {
  const parts = text.split(".");
  if (parts.length !== 4) return "not an IPv4 or IPv6 address";
  let value = 0n;
  for (const part of parts) {
    if (!/^[0-9]{1,3}$/.test(part)) return "not an IPv4 or IPv6 address";
    if (part.length > 1 && part.startsWith("0")) return "IPv4 octets may not have leading zeros";
    const octet = Number(part);
    if (octet > 255) return "an IPv4 octet is at most 255";
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

function parseIPv6(text: string): bigint | string {
  const bad = "not an IPv6 address";
  const halves = text.split("::");
  if (halves.length > 2) return bad;
  const groupsOf = (half: string, final: boolean): number[] | string => {
    if (half === "") return [];
    const groups: number[] = [];
    const parts = half.split(":");
    for (const [i, part] of parts.entries()) {
      if (final && i === parts.length - 1 && part.includes(".")) {
        const v4 = parseIPv4(part);
        if (typeof v4 === "string") return bad;
        groups.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
        groups.push(Number.parseInt(part, 16));
      } else {
        return bad;
      }
    }
    return groups;
  };
  const head = groupsOf(halves[0] as string, halves.length === 1);
  const tail = halves.length === 2 ? groupsOf(halves[1] as string, true) : [];
  if (typeof head === "string" || typeof tail === "string") return bad;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return bad;
  let value = 0n;
  for (const group of [...head, ...new Array<number>(missing).fill(0), ...tail]) {
    value = (value << 16n) | BigInt(group);
  }
  return value;
}

function formatIPv4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join(".");
}

/** RFC 5952: lower case, no leading zeros, the longest run of two or more zero groups as "::". */
function formatIPv6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { start: -1, length: 1 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (best.start < 0) return hex(groups);
  return `${hex(groups.slice(0, best.start))}::${hex(groups.slice(best.start + best.length))}`;
}

/**
 * The allowlist in canonical form, or the first problem: a CIDR refused by `parseCidr`, more
 * than `MAX_CIDR_ALLOWLIST` of them. Duplicates (after canonical form) are dropped.
 */
export function canonicalCidrAllowlist(cidrs: readonly string[]): string[] | { readonly problem: string } {
  if (cidrs.length > MAX_CIDR_ALLOWLIST) {
    return { problem: `cidr_allowlist names ${cidrs.length} ranges, more than the limit of ${MAX_CIDR_ALLOWLIST}` };
  }
  const out: string[] = [];
  for (const text of cidrs) {
    const parsed = parseCidr(text);
    if ("problem" in parsed) return parsed;
    if (!out.includes(parsed.cidr)) out.push(parsed.cidr);
  }
  return out;
}

/** An outbound policy: an allowlist together with `block_network` contradicts itself. */
export function networkPolicyProblem(blockNetwork: boolean, cidrAllowlist: readonly string[]): string | undefined {
  return blockNetwork && cidrAllowlist.length > 0
    ? "cidr_allowlist cannot be used with block_network: a blocked sandbox reaches nothing"
    : undefined;
}

/** A port number: a whole number from 1 to 65535. */
export function portProblem(port: number, what: string): string | undefined {
  return Number.isInteger(port) && port >= 1 && port <= 65_535
    ? undefined
    : `invalid ${what} ${String(port)}: a port is a whole number from 1 to 65535`;
}

/** Exposed ports: each a port, none twice, at most `MAX_EXPOSED_PORTS`. */
export function portsProblem(ports: readonly number[]): string | undefined {
  if (ports.length > MAX_EXPOSED_PORTS) {
    return `ports names ${ports.length} ports, more than the limit of ${MAX_EXPOSED_PORTS}`;
  }
  const seen = new Set<number>();
  for (const port of ports) {
    const problem = portProblem(port, "port");
    if (problem) return problem;
    if (seen.has(port)) return `port ${port} is listed twice in ports`;
    seen.add(port);
  }
  return undefined;
}

/** A readiness probe's interval: 0 (the default) or a whole number of ms up to the limit. */
export function probeIntervalProblem(intervalMs: number): string | undefined {
  return Number.isInteger(intervalMs) && intervalMs >= 0 && intervalMs <= MAX_PROBE_INTERVAL_MS
    ? undefined
    : `invalid probe interval ${String(intervalMs)}: a whole number of milliseconds from 1 to ${MAX_PROBE_INTERVAL_MS}`;
}
