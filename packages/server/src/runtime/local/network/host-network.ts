/**
 * Sandboxes' network on this host: a routed veth per sandbox (no bridge), a /32 each from the
 * server's range, its outbound policy in the server's nftables table (nft-ruleset.ts) and DNS
 * through the forwarder on the gateway address (dns-forwarder.ts).
 *
 *   host: sbx<hex of A>  (GW peer A: the gateway address, a route to A alone)
 *     ── veth ──  sandbox netns: eth0  (A peer GW, default via GW; IPv6 off)
 *
 * The sandbox's end is made, moved and configured by the server (host root) before the
 * sandbox's agent runs (during the user namespace handshake); sandboxed root has no
 * CAP_NET_ADMIN, so it cannot change any of it. The gateway address lives on an anchor link
 * of the server's (up from start to close), so the forwarder can listen before any sandbox is.
 * Every link of the server is tagged (its alias) with the server's instance: a start removes
 * what a crashed run left, and the table is made anew.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RuntimeNetworkPolicy } from "@sbx/server-kit";
import { DnsForwarder } from "./dns-forwarder.js";
import { formatIPv4, inRange, mergeRanges, type NetworkPlan, parseIPv4 } from "./network-options.js";
import {
  addLinkCommands,
  changePolicyCommands,
  NFT_FAMILY,
  type NftPolicy,
  removeLinkCommands,
  tableName,
  tableRuleset,
} from "./nft-ruleset.js";

const BLOCKED: NftPolicy = Object.freeze({ blocked: true, allowlist: undefined });
const IP_FORWARD = "/proc/sys/net/ipv4/ip_forward";
/**
 * Host-wide (tmpfs: gone at reboot, as the sysctl's value is): `off-before` says an sbx server
 * turned IPv4 forwarding on (it was off), and each running server that uses it has a file
 * named by its instance. The last one to close turns forwarding off again.
 */
const FORWARDING_STATE = "/run/sbx/ip-forward";
const OFF_BEFORE = "off-before";

export interface HostNetworkEvents {
  /** Something the operator should know (ip_forward turned on or off, a link not removed). */
  info(message: string, fields?: Record<string, unknown>): void;
}

/** Runs a command with `input` on its stdin and `fd` as its descriptor 3; resolves with its stdout. */
export type CommandRunner = (command: string, args: readonly string[], input?: string, fd?: number) => Promise<string>;

/** @internal What tests replace. */
export interface HostNetworkSeams {
  /** The ip_forward sysctl (default /proc/sys/net/ipv4/ip_forward). */
  readonly ipForward?: string;
  /** Where servers note who uses forwarding (FORWARDING_STATE). */
  readonly forwardingState?: string;
  /** Runs ip, nft, nsenter and conntrack (default: spawns them). */
  readonly run?: CommandRunner;
  /** First wait before a quarantined address's elements are tried again (doubles up to a minute). */
  readonly retryMs?: number;
}

const RETRY_MS = 5000;
const MAX_RETRY_MS = 60_000;

export class HostNetwork {
  readonly #instance: string;
  readonly #plan: NetworkPlan;
  readonly #table: string;
  readonly #alias: string;
  readonly #anchor: string;
  /** Addresses of live links (by offset in the range), and their links. */
  readonly #links = new Map<string, SandboxLink>();
  readonly #taken = new Set<number>();
  /**
   * Addresses of removed links whose set elements could not be removed (so they stay taken:
   * no later sandbox may get them while an element could widen its policy), tried again.
   */
  readonly #quarantined = new Map<string, NodeJS.Timeout>();
  readonly #retryMs: number;
  #cursor = 2;
  #dns: DnsForwarder | undefined;
  #closed = false;
  readonly #events: HostNetworkEvents;
  readonly #ipForward: string;
  readonly #forwardingState: string;
  /** @internal */
  readonly run: CommandRunner;

  private constructor(instance: string, plan: NetworkPlan, events: HostNetworkEvents, seams: HostNetworkSeams) {
    this.#instance = instance;
    this.#plan = plan;
    this.#events = events;
    this.#ipForward = seams.ipForward ?? IP_FORWARD;
    this.#forwardingState = seams.forwardingState ?? FORWARDING_STATE;
    this.run = seams.run ?? run;
    this.#retryMs = seams.retryMs ?? RETRY_MS;
    this.#table = tableName(instance);
    this.#alias = aliasOf(instance);
    this.#anchor = linkName(plan.first + 1);
  }

  get plan(): NetworkPlan {
    return this.#plan;
  }

  get table(): string {
    return this.#table;
  }

  /**
   * Sweeps what a crashed run of this server left (its table and links), checks that the
   * range meets no route of the host, makes the table, turns IPv4 forwarding on if it is off
   * (and says so), and makes the anchor and the DNS forwarder.
   *
   * Forwarding is a host-wide switch: turned on, the host would route between all its other
   * interfaces too. So when it was off (an sbx server turned it on: `off-before`), the table
   * drops every forwarded packet that touches no sandbox link (made before forwarding is
   * turned on), and the last server to close turns it off again.
   */
  static async start(
    instance: string,
    plan: NetworkPlan,
    events: HostNetworkEvents,
    seams: HostNetworkSeams = {},
  ): Promise<HostNetwork> {
    const network = new HostNetwork(instance, plan, events, seams);
    await sweepHostNetwork(instance, network.run);
    if (plan.slotRange) await sweepDeadInRange(plan, network.run, events);
    await network.#checkRoutes();
    try {
      const state = network.#forwardingState;
      mkdirSync(state, { recursive: true, mode: 0o700 });
      writeFileSync(join(state, instance), "");
      const wasOff = readFileSync(network.#ipForward, "utf8").trim() !== "1";
      if (wasOff) writeFileSync(join(state, OFF_BEFORE), "");
      const forwardOnlySandboxes = wasOff || existsSync(join(state, OFF_BEFORE));
      await network.run("nft", ["-f", "-"], tableRuleset(network.#table, plan, { forwardOnlySandboxes }));
      if (wasOff) {
        writeFileSync(network.#ipForward, "1\n");
        events.info(
          "turned on IPv4 forwarding (net.ipv4.ip_forward=1) for sandboxes' outbound network; forwarded traffic of no sandbox is dropped, and forwarding goes off again when the last sbx server stops",
          {},
        );
      }
      await network.run(
        "ip",
        ["-batch", "-"],
        [
          `link add ${network.#anchor} type veth peer name ${network.#anchor}p`,
          `link set dev ${network.#anchor}p addrgenmode none alias ${network.#alias}`,
          `link set dev ${network.#anchor} addrgenmode none alias ${network.#alias} up`,
          `addr add ${plan.gateway}/32 dev ${network.#anchor}`,
        ].join("\n"),
      );
      network.#dns = await DnsForwarder.start({
        address: plan.gateway,
        upstreams: plan.upstreams,
        allowed: (source) => {
          const link = network.#links.get(source);
          return link !== undefined && !link.blocked;
        },
      });
    } catch (error) {
      await network.close();
      throw error;
    }
    return network;
  }

  async #checkRoutes(): Promise<void> {
    const routes = JSON.parse(await this.run("ip", ["-4", "-j", "route", "show", "table", "all"])) as {
      dst?: string;
    }[];
    for (const { dst } of routes) {
      if (!dst || dst === "default") continue;
      const cidr = dst.includes("/") ? dst : `${dst}/32`;
      const [base] = cidr.split("/") as [string];
      if (inRange(base, this.#plan.cidr) || inRange(this.#plan.cidr.split("/")[0] as string, cidr)) {
        throw new Error(
          `the sandboxes' network ${this.#plan.cidr} overlaps this host's route to ${dst}: choose another range (--net-cidr)`,
        );
      }
    }
  }

  #allocate(): string {
    const last = this.#plan.size - 2; // (the range's broadcast address is not handed out)
    for (let tries = 0; tries < this.#plan.size; tries++) {
      const offset = this.#cursor;
      this.#cursor = this.#cursor >= last ? 2 : this.#cursor + 1;
      if (!this.#taken.has(offset)) {
        this.#taken.add(offset);
        return formatIPv4(this.#plan.first + offset);
      }
    }
    throw new Error(`the sandboxes' network ${this.#plan.cidr} has no free address`);
  }

  /**
   * Gives the network namespace open as `netnsFd` (bwrap's child's, checked, opened through
   * its checked /proc dir) a link, with `policy` in force from its first packet (in the same
   * nft transaction as the link's own elements; blocked when none is given: nothing leaves it
   * until `apply`). A create that knows its policy (a cold start) so needs no second
   * transaction; a warm sandbox starts blocked and gets its policy at hand-out. Everything is
   * done through that descriptor, never by pid (a pid could be another process's by then).
   */
  async attach(netnsFd: number, policy?: RuntimeNetworkPolicy): Promise<SandboxLink> {
    if (this.#closed) throw new Error("the sandboxes' network is closed");
    const address = this.#allocate();
    const iface = linkName(parseIPv4(address));
    const initial = policy ? nftPolicyOf(policy) : BLOCKED;
    const link = new SandboxLink(this, address, iface, initial);
    this.#links.set(address, link);
    const { gateway } = this.#plan;
    try {
      await Promise.all([
        this.run("nft", ["-f", "-"], addLinkCommands(this.#table, iface, address, initial).join("\n")),
        (async () => {
          // (ip opens a netns argument with a slash in it as a path: the descriptor, as fd 3.)
          await this.run(
            "ip",
            ["-batch", "-"],
            [
              `link add ${iface} type veth peer name eth0 netns /proc/self/fd/3`,
              `link set dev ${iface} addrgenmode none alias ${this.#alias} up`,
              `addr add ${gateway} peer ${address} dev ${iface}`,
            ].join("\n"),
            netnsFd,
          );
          // In the sandbox's namespace (entered through the descriptor, bound to that process):
          // no IPv6 on its link (nothing leaves that way), its address, the route out (bwrap
          // brings its loopback up itself).
          await this.run(
            "nsenter",
            [
              "--net=/proc/self/fd/3",
              "--",
              "/bin/sh",
              "-c",
              "for f in default eth0; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6 2>/dev/null; done; exec ip -batch -",
            ],
            [
              `addr add ${address} peer ${gateway} dev eth0`,
              "link set dev eth0 up",
              `route add default via ${gateway} dev eth0`,
            ].join("\n"),
            netnsFd,
          );
        })(),
      ]);
    } catch (error) {
      await link.detach();
      throw new Error(`the sandbox's network could not be set up: ${(error as Error).message}`);
    }
    return link;
  }

  /**
   * @internal: a link's policy changed (one transaction: from then on every packet it no
   * longer allows is refused, established flows' too); answers the cleanup of its tracked flows
   * that are no longer allowed (so they end at once on both sides rather than time out).
   */
  async changePolicy(link: SandboxLink, from: NftPolicy, to: NftPolicy): Promise<{ cleanup: Promise<void> }> {
    await this.run("nft", ["-f", "-"], changePolicyCommands(this.#table, link.address, from, to).join("\n"));
    if (to.blocked) this.#dns?.dropSource(link.address);
    return { cleanup: cutFlows(this.run, link.address, to) };
  }

  /**
   * @internal: removes a link and everything of it (its elements, flows, address). The
   * address is free again only once no set element of it is left; otherwise it is
   * quarantined (and said), and its removal tried again later.
   */
  async removeLink(link: SandboxLink, policy: NftPolicy, attached: boolean): Promise<void> {
    // (Gone already when its namespace went: the veth goes with either end.)
    await this.run("ip", ["link", "del", link.iface]).catch(() => {});
    this.#links.delete(link.address);
    this.#dns?.dropSource(link.address);
    const removed = !attached || (await this.#removeElements(link, policy));
    // (Present only while connections of it are tracked.)
    await this.run("nft", ["delete", "element", NFT_FAMILY, this.#table, "conns", `{ ${link.address} }`]).catch(
      () => {},
    );
    await this.run("conntrack", ["-D", "-f", "ipv4", "-s", link.address]).catch(() => {});
    if (removed) this.#free(link.address);
    else this.#quarantine(link, policy, this.#retryMs);
  }

  /** Removes the link's set elements; true once none of its address is left. */
  async #removeElements(link: SandboxLink, policy: NftPolicy): Promise<boolean> {
    const commands = removeLinkCommands(this.#table, link.iface, link.address, policy);
    try {
      await this.run("nft", ["-f", "-"], commands.join("\n"));
      return true;
    } catch {
      // One at a time (one already gone fails the whole transaction), then look.
      for (const command of commands) await this.run("nft", ["-f", "-"], command).catch(() => {});
      return !(await this.#hasElementsOf(link));
    }
  }

  /** Whether a policy set of the table still holds an element of the link (true when it cannot tell). */
  async #hasElementsOf(link: SandboxLink): Promise<boolean> {
    try {
      const listed = await this.run("nft", ["list", "table", NFT_FAMILY, this.#table]);
      const sets = listed.split(/\n\s*set /).slice(1);
      const policySets = sets.filter((set) => /^(ifaces|links|blocked|allowlisted|allow) /.test(set));
      const address = new RegExp(`(?<![\\d.])${link.address.replaceAll(".", "\\.")}(?!\\d)`);
      return policySets.some((set) => address.test(set) || set.includes(`"${link.iface}"`));
    } catch {
      return true;
    }
  }

  #quarantine(link: SandboxLink, policy: NftPolicy, wait: number): void {
    if (this.#closed) return;
    this.#events.info(
      "a removed sandbox's network address keeps set elements: it is not handed out until they are removed",
      { address: link.address, retryInMs: wait },
    );
    const timer = setTimeout(async () => {
      this.#quarantined.delete(link.address);
      if (this.#closed) return;
      if (await this.#removeElements(link, policy)) {
        this.#events.info("a quarantined sandbox network address is free again", { address: link.address });
        this.#free(link.address);
      } else {
        this.#quarantine(link, policy, Math.min(wait * 2, MAX_RETRY_MS));
      }
    }, wait);
    timer.unref();
    this.#quarantined.set(link.address, timer);
  }

  #free(address: string): void {
    this.#taken.delete(parseIPv4(address) - this.#plan.first);
  }

  /**
   * Removes the table, the anchor and the forwarder (links are removed by their sandboxes
   * first); turns IPv4 forwarding off again when an sbx server turned it on and no other uses it.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#dns?.close();
    await Promise.all([...this.#links.values()].map((link) => link.detach()));
    for (const timer of this.#quarantined.values()) clearTimeout(timer);
    this.#quarantined.clear();
    // (Forwarding off first: it is never on without the drop of the table.)
    this.#restoreForwarding();
    await sweepHostNetwork(this.#instance, this.run);
  }

  #restoreForwarding(): void {
    const state = this.#forwardingState;
    try {
      rmSync(join(state, this.#instance), { force: true });
      if (!existsSync(join(state, OFF_BEFORE))) return;
      const others = readdirSync(state).filter((name) => name !== OFF_BEFORE);
      if (others.length > 0) {
        this.#events.info("left IPv4 forwarding on: other sbx servers on this host use it", { servers: others });
        return;
      }
      writeFileSync(this.#ipForward, "0\n");
      rmSync(join(state, OFF_BEFORE), { force: true });
      this.#events.info("turned IPv4 forwarding off again (net.ipv4.ip_forward=0), as it was before", {});
    } catch (error) {
      this.#events.info("could not turn IPv4 forwarding off again", { error: (error as Error).message });
    }
  }
}

/** One sandbox's link and policy. */
export class SandboxLink {
  #policy: NftPolicy;
  #detached: Promise<void> | undefined;
  /** Policy changes run one at a time (each after the last one's cleanup). */
  #changing: Promise<void> = Promise.resolve();
  #cleanup: Promise<void> = Promise.resolve();

  constructor(
    readonly host: HostNetwork,
    readonly address: string,
    readonly iface: string,
    /** The policy its elements were added with (attach). */
    initial: NftPolicy,
  ) {
    this.#policy = initial;
  }

  get blocked(): boolean {
    return this.#policy.blocked;
  }

  /** Puts `policy` in force; resolves once it is, and connections it no longer allows are cut. */
  apply(policy: RuntimeNetworkPolicy): Promise<void> {
    const step = async () => {
      if (this.#detached) throw new Error("the sandbox's network is gone");
      const to = nftPolicyOf(policy);
      const from = this.#policy;
      if (samePolicy(from, to)) return;
      const { cleanup } = await this.host.changePolicy(this, from, to);
      this.#policy = to;
      // In force already; the flows' cleanup goes on meanwhile (a later change, or the
      // link's removal, waits for it).
      this.#cleanup = cleanup;
    };
    const next = this.#changing.then(step, step);
    const settled = () => this.#cleanup.catch(() => {});
    this.#changing = next.then(settled, settled);
    return next;
  }

  detach(): Promise<void> {
    this.#detached ??= this.#changing.then(() => this.host.removeLink(this, this.#policy, true));
    return this.#detached;
  }
}

/** The policy as set elements: sandboxes have IPv4 only, so IPv6 ranges of an allowlist allow nothing. */
export function nftPolicyOf(policy: RuntimeNetworkPolicy): NftPolicy {
  if (policy.blockNetwork) return BLOCKED;
  if (policy.cidrAllowlist.length === 0) return { blocked: false, allowlist: undefined };
  return { blocked: false, allowlist: mergeRanges(policy.cidrAllowlist) };
}

function samePolicy(a: NftPolicy, b: NftPolicy): boolean {
  return a.blocked === b.blocked && JSON.stringify(a.allowlist) === JSON.stringify(b.allowlist);
}

/**
 * Deletes the tracked flows of `address` that `policy` does not allow (all of them when it is
 * blocked), so they end at once rather than hang until their timeouts.
 */
async function cutFlows(run: CommandRunner, address: string, policy: NftPolicy): Promise<void> {
  if (policy.blocked) {
    await run("conntrack", ["-D", "-f", "ipv4", "-s", address]).catch(() => {});
    return;
  }
  const allowlist = policy.allowlist;
  if (!allowlist) return; // (open: it only loosened)
  const listed = await run("conntrack", ["-L", "-f", "ipv4", "-s", address]).catch(() => "");
  const destinations = new Set<string>();
  for (const line of listed.split("\n")) {
    const dst = /\bdst=(\d+\.\d+\.\d+\.\d+)/.exec(line)?.[1];
    if (dst && !allowlist.some((cidr) => inRange(dst, cidr))) destinations.add(dst);
  }
  for (const dst of destinations) {
    await run("conntrack", ["-D", "-f", "ipv4", "-s", address, "-d", dst]).catch(() => {});
  }
}

/** The host link of the sandbox (or anchor) at `address`: "sbx" and its 8 hex digits. */
function linkName(address: number): string {
  return `sbx${address.toString(16).padStart(8, "0")}`;
}

function aliasOf(instance: string): string {
  return `sbx:${instance}`;
}

/** Removes the table and every link of the server `instance` (tagged with its alias). */
export async function sweepHostNetwork(instance: string, run: CommandRunner = runCommand): Promise<void> {
  await run("nft", ["delete", "table", NFT_FAMILY, tableName(instance)]).catch(() => {});
  const links = JSON.parse(await run("ip", ["-j", "link", "show"]).catch(() => "[]")) as {
    ifname?: string;
    ifalias?: string;
  }[];
  const alias = aliasOf(instance);
  const ours = links.filter((l) => l.ifalias === alias && l.ifname).map((l) => l.ifname as string);
  if (ours.length > 0) {
    await run("ip", ["-force", "-batch", "-"], ours.map((name) => `link del ${name}`).join("\n")).catch(() => {});
  }
}

/**
 * Removes what a server that died (killed, or its host crashed mid-run) left in `plan`'s range:
 * its links (named after addresses in the range: the anchor and sandboxes' host ends) and any
 * sbx table that names the range's gateway. Only for a range of the server's own held slot
 * (`slotRange`): no live server can have links there, so they are leftovers, and without this
 * every later server given that slot would refuse to start on their routes.
 */
export async function sweepDeadInRange(
  plan: NetworkPlan,
  run: CommandRunner = runCommand,
  events?: HostNetworkEvents,
): Promise<void> {
  const links = JSON.parse(await run("ip", ["-j", "link", "show"]).catch(() => "[]")) as { ifname?: string }[];
  const dead = new Set<string>();
  for (const { ifname } of links) {
    const match = ifname ? /^sbx([0-9a-f]{8})p?$/.exec(ifname) : null;
    if (!match) continue;
    const address = Number.parseInt(match[1] as string, 16);
    if (address >= plan.first && address < plan.first + plan.size) dead.add(`sbx${match[1]}`);
  }
  if (dead.size > 0) {
    await run("ip", ["-force", "-batch", "-"], [...dead].map((name) => `link del ${name}`).join("\n")).catch(() => {});
  }
  const tables = (await run("nft", ["list", "tables", NFT_FAMILY]).catch(() => ""))
    .split("\n")
    .map((line) => /^table inet (sbx_[0-9a-f]+)$/.exec(line.trim())?.[1])
    .filter((name): name is string => name !== undefined);
  let tablesRemoved = 0;
  for (const table of tables) {
    const text = await run("nft", ["list", "table", NFT_FAMILY, table]).catch(() => "");
    if (!new RegExp(`\\b${plan.gateway.replaceAll(".", "\\.")}\\b`).test(text)) continue;
    await run("nft", ["delete", "table", NFT_FAMILY, table]).catch(() => {});
    tablesRemoved++;
  }
  if (dead.size > 0 || tablesRemoved > 0) {
    events?.info("removed a dead server's network leftovers in this server's range", {
      range: plan.cidr,
      links: dead.size,
      tables: tablesRemoved,
    });
  }
}

/**
 * Runs `command` with `input` on its stdin (and `fd` as its descriptor 3); resolves with its
 * stdout, rejects with its stderr's first lines when it fails.
 */
const runCommand: CommandRunner = run;

function run(command: string, args: readonly string[], input?: string, fd?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdio: ("pipe" | "ignore" | number)[] = [input === undefined ? "ignore" : "pipe", "pipe", "pipe"];
    if (fd !== undefined) stdio[3] = fd;
    const child = spawn(command, args, { stdio, env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" } });
    let out = "";
    let err = "";
    child.stdout?.setEncoding("utf8").on("data", (s: string) => {
      if (out.length < 4 << 20) out += s;
    });
    child.stderr?.setEncoding("utf8").on("data", (s: string) => {
      if (err.length < 4096) err += s;
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${command} ${args.join(" ")} failed: ${err.trim().split("\n").slice(0, 3).join("; ")}`));
    });
    child.stdin?.on("error", () => {});
    child.stdin?.end(input);
  });
}
