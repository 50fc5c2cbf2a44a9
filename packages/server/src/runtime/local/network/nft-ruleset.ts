/**
 * The server's nftables table (family inet, one per server: `sbx_<instance>`), as text for
 * `nft -f -`. It touches no other table. Every packet a sandbox sends (not only the first of a
 * connection, so a policy change cuts established flows) goes through `egress`:
 *
 *   not IPv4, or a source address that is not its link's   → dropped
 *   blocked sandbox                                        → refused (net unreachable)
 *   a denied destination (always-denied, operator's)       → refused (admin prohibited)
 *   outside the operator's egress ceiling (if set)         → refused
 *   sandbox with an allowlist, destination not in it       → refused
 *   a new connection past the sandbox's tracked limit      → refused
 *
 * Packets to the host itself (every address of it) from a sandbox meet `to_host`: only its
 * gateway's DNS forwarder, and not for a blocked sandbox. That is decided first in
 * `before_nat` (prerouting, before any table's DNAT: priority dstnat - 10), on the address the
 * sandbox sent to: a host port that another table publishes by DNAT (Docker's, kube's
 * NodePorts) is refused like any other port of the host, rather than forwarded on. Both count a sandbox's new flows in
 * one place (`tracked`, before anything is accepted), so its tracked limit covers everything it
 * makes the host track (a datagram from a new port to the DNS forwarder is a flow too).
 * Inbound to a sandbox: only replies, and connections the server opens to it (tunnels, tokens,
 * probes, sb.connect), whose replies pass `before_nat` and `to_host` whatever the sandbox's
 * policy (blocked ones included). The gateway address is for sandboxes' links alone
 * (`input`: from anywhere else, say a neighbour routing through this host with a sandbox's
 * address as its source, it is dropped), and from the host itself only root may start
 * anything towards a sandbox (`to_sandbox`).
 *
 * When an sbx server turned the host's IPv4 forwarding on (see host-network.ts), `forward`
 * also drops what touches no sandbox link (`sbx*`: this server's or another's), so the host
 * routes nothing it did not route before. Its priority does not matter for other tables: in
 * nftables an accept ends only its own base chain, a drop ends the packet wherever it is
 * said, so no priority could let another table's accept win over it. What it may drop is only
 * what no table could forward while forwarding was off; what a program turns on later while
 * sbx runs (a Docker daemon, a VPN started after the server) is dropped too: turn
 * `net.ipv4.ip_forward` on before the server starts on such hosts (the rule is then not made).
 * (Bridged packets seen through br_netfilter pass this hook even with forwarding off, with the
 * bridge as both links: packets between two bridges are spared, nftables cannot compare the
 * in and out links themselves.)
 * Outbound is masqueraded behind the host's address. A sandbox's policy is a handful of set
 * elements keyed by its address, changed in one atomic transaction.
 */
import type { NetworkPlan } from "./network-options.js";

export const NFT_FAMILY = "inet";

export function tableName(instance: string): string {
  return `sbx_${instance}`;
}

export interface RulesetOptions {
  /** Drop forwarded packets that touch no sandbox link (forwarding was off before sbx). */
  readonly forwardOnlySandboxes: boolean;
}

/** The table, created anew (deleted first when a crashed run left it: the caller checks). */
export function tableRuleset(table: string, plan: NetworkPlan, options: RulesetOptions): string {
  const set = (items: readonly string[]) => `{ ${items.join(", ")} }`;
  const ceiling = plan.allow ? `\t\tip daddr != @ceiling reject with icmp type admin-prohibited\n` : "";
  return `table ${NFT_FAMILY} ${table} {
\tset ifaces { type ifname; }
\tset links { type ifname . ipv4_addr; }
\tset blocked { type ipv4_addr; }
\tset allowlisted { type ipv4_addr; }
\tset allow { type ipv4_addr . ipv4_addr; flags interval; }
\tset denied { type ipv4_addr; flags interval; auto-merge; elements = ${set(plan.denied)} }
${plan.allow ? `\tset ceiling { type ipv4_addr; flags interval; auto-merge; elements = ${set(plan.allow)} }\n` : ""}\tset conns { type ipv4_addr; size 65536; flags dynamic; }
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname @ifaces jump egress
\t\toifname @ifaces jump ingress
${options.forwardOnlySandboxes ? `\t\tiifname != "sbx*" oifname != "sbx*" jump not_sandboxes\n` : ""}\t}
\tchain not_sandboxes {
\t\tmeta iifkind "bridge" meta oifkind "bridge" return
\t\tdrop
\t}
\tchain egress {
\t\tmeta nfproto != ipv4 drop
\t\tiifname . ip saddr != @links drop
\t\tip saddr @blocked reject with icmp type net-unreachable
\t\tip daddr @denied reject with icmp type admin-prohibited
${ceiling}\t\tip saddr @allowlisted ip saddr . ip daddr != @allow reject with icmp type admin-prohibited
\t\tjump tracked
\t}
\tchain tracked {
\t\tct state new add @conns { ip saddr ct count over ${plan.maxConnections} } reject with icmp type admin-prohibited
\t}
\tchain ingress {
\t\tct state established,related accept
\t\tdrop
\t}
\tchain before_nat {
\t\ttype filter hook prerouting priority dstnat - 10; policy accept;
\t\tiifname @ifaces ct direction reply ct state established accept
\t\tiifname @ifaces fib daddr type local jump to_host_port
\t}
\tchain to_host_port {
\t\tip daddr != ${plan.gateway} reject with icmp type admin-prohibited
\t\tmeta l4proto != { tcp, udp } reject with icmp type admin-prohibited
\t\tth dport != 53 reject with icmp type admin-prohibited
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname @ifaces jump to_host
\t\tip daddr ${plan.gateway} drop
\t}
\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\toifname @ifaces jump to_sandbox
\t}
\tchain to_sandbox {
\t\tct state established,related accept
\t\tmeta skuid != 0 drop
\t}
\tchain to_host {
\t\tmeta nfproto != ipv4 drop
\t\tiifname . ip saddr != @links drop
\t\tct direction reply ct state established accept
\t\tip saddr @blocked reject with icmp type net-unreachable
\t\tip daddr != ${plan.gateway} reject with icmp type admin-prohibited
\t\tmeta l4proto != { tcp, udp } reject with icmp type admin-prohibited
\t\tth dport != 53 reject with icmp type admin-prohibited
\t\tjump tracked
\t\taccept
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr ${plan.cidr} oifname != @ifaces masquerade
\t}
}
`;
}

/**
 * A sandbox's policy as set elements: blocked; or an allowlist (its IPv4 ranges: none when it
 * named IPv6 ranges alone, which sandboxes cannot reach); or open (no allowlist).
 */
export interface NftPolicy {
  readonly blocked: boolean;
  readonly allowlist: readonly string[] | undefined;
}

/** The commands that add a link (its name and address) with `policy`. */
export function addLinkCommands(table: string, iface: string, address: string, policy: NftPolicy): string[] {
  return [
    `add element ${NFT_FAMILY} ${table} ifaces { "${iface}" }`,
    `add element ${NFT_FAMILY} ${table} links { "${iface}" . ${address} }`,
    ...policyCommands(table, address, "add", policy),
  ];
}

/** The commands that remove a link and its policy. */
export function removeLinkCommands(table: string, iface: string, address: string, policy: NftPolicy): string[] {
  return [
    ...policyCommands(table, address, "delete", policy),
    `delete element ${NFT_FAMILY} ${table} links { "${iface}" . ${address} }`,
    `delete element ${NFT_FAMILY} ${table} ifaces { "${iface}" }`,
  ];
}

/** The commands that replace `from` by `to` (one transaction when run together). */
export function changePolicyCommands(table: string, address: string, from: NftPolicy, to: NftPolicy): string[] {
  return [...policyCommands(table, address, "delete", from), ...policyCommands(table, address, "add", to)];
}

function policyCommands(table: string, address: string, verb: "add" | "delete", policy: NftPolicy): string[] {
  const at = `${NFT_FAMILY} ${table}`;
  if (policy.blocked) return [`${verb} element ${at} blocked { ${address} }`];
  if (!policy.allowlist) return [];
  const listed = [`${verb} element ${at} allowlisted { ${address} }`];
  if (policy.allowlist.length === 0) return listed;
  return [
    ...listed,
    `${verb} element ${at} allow { ${policy.allowlist.map((cidr) => `${address} . ${cidr}`).join(", ")} }`,
  ];
}
