/**
 * The operator's settings of sandboxes' network, checked: the sandboxes' own range (a /32 per
 * sandbox), what no sandbox may reach (always, and by the operator's word), the egress ceiling,
 * the per-sandbox limit of tracked connections and the DNS forwarder's upstream resolvers.
 */
import { readFileSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import { parseCidr } from "@sbx/proto";

export interface SandboxNetworkOptions {
  /**
   * The sandboxes' addresses (IPv4, /16 to /28): the first host address is every sandbox's
   * gateway (and DNS forwarder), each sandbox gets one of the others. Default: a /21 of
   * 10.213.0.0/16, the one of the server's host-id range (two servers never share one).
   */
  readonly cidr?: string;
  /**
   * IPv4 ranges no sandbox may reach, on top of those always denied (this host, loopback,
   * link-local and metadata, multicast and broadcast, the sandboxes' ranges). Default: the
   * private ranges (10/8, 172.16/12, 192.168/16, 100.64/10); [] lifts them.
   */
  readonly deny?: readonly string[];
  /** The egress ceiling: when given, sandboxes may reach only inside these IPv4 ranges. */
  readonly allow?: readonly string[];
  /** Most connections one sandbox may have tracked at once (new ones past it are refused). Default 4096. */
  readonly maxConnections?: number;
  /**
   * Resolvers the DNS forwarder asks ("ADDRESS" or "ADDRESS:PORT", "[v6]:PORT"). Default: the
   * host's, from /etc/resolv.conf.
   */
  readonly dnsUpstream?: readonly string[];
}

/** The default pool of sandbox ranges: each server takes a /21 of it. */
export const DEFAULT_NET_POOL = "10.213.0.0/16";
const DEFAULT_NET_PREFIX = 21;
export const PRIVATE_RANGES = Object.freeze(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]);
/**
 * Never reachable from a sandbox, whatever the operator says: "this network", loopback,
 * link-local (cloud metadata: 169.254.169.254), multicast, reserved and broadcast.
 */
export const ALWAYS_DENIED = Object.freeze([
  "0.0.0.0/8",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "224.0.0.0/4",
  "240.0.0.0/4",
]);
export const DEFAULT_MAX_CONNECTIONS = 4096;

/** A resolver the forwarder asks. */
export interface Upstream {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** The settings checked and completed. */
export interface NetworkPlan {
  /** The sandboxes' range, canonical ("10.213.8.0/21"). */
  readonly cidr: string;
  /** Its first address as a number, and its size. */
  readonly first: number;
  readonly size: number;
  /** The gateway (and DNS forwarder) address: the range's first host. */
  readonly gateway: string;
  /** Denied destinations (canonical, IPv4): always denied, the sandbox ranges, the operator's. */
  readonly denied: readonly string[];
  /** The egress ceiling; undefined: none. */
  readonly allow: readonly string[] | undefined;
  readonly maxConnections: number;
  readonly upstreams: readonly Upstream[];
  /**
   * The range is the default one of the server's default host-id range slot, which it holds
   * host-wide while it runs: no live server has it, so links and tables in it are a dead
   * server's (the runtime clears this for an operator's range of ids).
   */
  readonly slotRange: boolean;
}

/**
 * The plan for `options`, or an Error naming the bad setting. `slot` picks the default /21
 * of the pool (the server's host-id range slot, unique on this host).
 */
export function networkPlan(options: SandboxNetworkOptions, slot: number): NetworkPlan {
  const poolSlots = 2 ** (DEFAULT_NET_PREFIX - 16);
  const cidr = options.cidr ?? `10.213.${(slot % poolSlots) * 2 ** (24 - DEFAULT_NET_PREFIX)}.0/${DEFAULT_NET_PREFIX}`;
  const range = ipv4Range(cidr, "the sandboxes' network");
  if (range.prefix < 16 || range.prefix > 28) {
    throw new Error(`the sandboxes' network ${cidr} must be a /16 to a /28`);
  }
  const deny = (options.deny ?? PRIVATE_RANGES).map((c) => ipv4Range(c, "a denied range").cidr);
  const allow = options.allow?.map((c) => ipv4Range(c, "an allowed range").cidr);
  if (allow && allow.length === 0) throw new Error("the egress ceiling names no range");
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!Number.isSafeInteger(maxConnections) || maxConnections < 1 || maxConnections > 1_000_000) {
    throw new Error(`the connection limit must be a whole number from 1 to 1000000, got ${maxConnections}`);
  }
  const upstreams = options.dnsUpstream ? options.dnsUpstream.map(parseUpstream) : hostResolvers();
  const denied = [...ALWAYS_DENIED, range.cidr, ...(options.cidr ? [] : [DEFAULT_NET_POOL]), ...deny];
  return {
    cidr: range.cidr,
    first: range.first,
    size: 2 ** (32 - range.prefix),
    gateway: formatIPv4(range.first + 1),
    denied: mergeRanges(denied),
    allow: allow ? mergeRanges(allow) : undefined,
    maxConnections,
    upstreams,
    slotRange: options.cidr === undefined,
  };
}

function ipv4Range(text: string, what: string): { cidr: string; first: number; prefix: number } {
  const parsed = parseCidr(text);
  if ("problem" in parsed) throw new Error(`${what}: ${parsed.problem}`);
  if (parsed.family !== 4) throw new Error(`${what}: ${text} is not IPv4 (sandboxes have IPv4 only)`);
  const [address, prefix] = parsed.cidr.split("/") as [string, string];
  return { cidr: parsed.cidr, first: parseIPv4(address), prefix: Number(prefix) };
}

export function parseIPv4(address: string): number {
  return address.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
}

export function formatIPv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => String(Math.floor(value / 2 ** shift) % 256)).join(".");
}

/** Whether IPv4 `address` is inside canonical `cidr`. */
export function inRange(address: string, cidr: string): boolean {
  const [base, prefix] = cidr.split("/") as [string, string];
  const size = 2 ** (32 - Number(prefix));
  const start = parseIPv4(base);
  const value = parseIPv4(address);
  return value >= start && value < start + size;
}

/**
 * The IPv4 ranges of a canonical list, without those inside another (two CIDRs either nest or
 * do not meet): nftables refuses overlapping intervals of one key.
 */
export function mergeRanges(cidrs: readonly string[]): string[] {
  const v4 = [...new Set(cidrs.filter((c) => !c.includes(":")))];
  return v4.filter(
    (c) =>
      !v4.some((other) => {
        if (other === c) return false;
        const [base, prefix] = c.split("/") as [string, string];
        return Number(other.split("/")[1]) <= Number(prefix) && inRange(base, other);
      }),
  );
}

function parseUpstream(text: string): Upstream {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  let address = text;
  let port = 53;
  if (bracketed) {
    address = bracketed[1] as string;
    port = Number(bracketed[2]);
  } else if (/^[\d.]+:\d+$/.test(text)) {
    const at = text.lastIndexOf(":");
    address = text.slice(0, at);
    port = Number(text.slice(at + 1));
  }
  const family = isIPv4(address) ? 4 : isIPv6(address) ? 6 : undefined;
  if (!family || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new Error(`a DNS upstream is ADDRESS or ADDRESS:PORT, got ${JSON.stringify(text)}`);
  }
  return { address, port, family };
}

/** The host's resolvers (at most three, as the C library uses), from /etc/resolv.conf. */
function hostResolvers(): Upstream[] {
  let text = "";
  try {
    text = readFileSync("/etc/resolv.conf", "utf8");
  } catch {}
  const found: Upstream[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const address = m?.[1]?.replace(/%.*$/, "");
    if (address && (isIPv4(address) || isIPv6(address)) && found.length < 3) {
      found.push({ address, port: 53, family: isIPv4(address) ? 4 : 6 });
    }
  }
  // glibc's default when none is named: the local host.
  return found.length > 0 ? found : [{ address: "127.0.0.1", port: 53, family: 4 }];
}
