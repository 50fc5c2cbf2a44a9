// The host side of sandboxes' networks on its own (real nft, ip, conntrack; a range, an
// instance and network namespaces of the test's own): IPv4 forwarding turned on only with the
// drop of what is no sandbox's, and off again at close (on a stand-in sysctl file: the host's
// own is shared by every server here); links moved through the namespace's descriptor; an
// address whose set elements could not be removed is never handed out again until they are.
import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { realServerAvailable } from "../../../test-support.js";
import { type CommandRunner, HostNetwork, type HostNetworkSeams } from "./host-network.js";
import { networkPlan } from "./network-options.js";

const available = await realServerAvailable("host network tests");

const FORWARD_DROP = /iifname != "sbx\*" oifname != "sbx\*" jump not_sandboxes/;

describe.runIf(available)("a server's host network", () => {
  const work = mkdtempSync(join(tmpdir(), "sbx-host-network-"));
  const started: HostNetwork[] = [];
  afterAll(async () => {
    // (Each test closes its own; this is for one that failed midway.)
    for (const network of started) await network.close();
    rmSync(work, { recursive: true, force: true });
  });
  let count = 0;
  /** A plan of its own (a /28 of 10.214/16 no other test uses) and seams in `work`. */
  const start = async (seams: HostNetworkSeams = {}, log: string[] = []) => {
    const n = ++count;
    const instance = `t${process.pid.toString(16)}x${n}`;
    const plan = networkPlan({ cidr: `10.214.${process.pid % 200}.${n * 16}/28`, dnsUpstream: ["127.0.0.1:9"] }, 0);
    const network = await HostNetwork.start(instance, plan, { info: (message) => log.push(message) }, seams);
    started.push(network);
    return network;
  };
  /** Network namespaces of the test's own, open (as a sandbox's is, through a descriptor). */
  const namespaces: { name: string; fd: number }[] = [];
  afterAll(() => {
    for (const { name, fd } of namespaces) {
      closeSync(fd);
      spawnSync("ip", ["netns", "del", name]);
    }
  });
  const namespace = () => {
    const name = `sbxt-hn-${process.pid}-${namespaces.length}`;
    expect(spawnSync("ip", ["netns", "add", name]).status).toBe(0);
    const fd = openSync(`/run/netns/${name}`, "r");
    namespaces.push({ name, fd });
    return fd;
  };
  const listTable = (table: string) => spawnSync("nft", ["list", "table", "inet", table], { encoding: "utf8" }).stdout;
  const stateDir = () => mkdtempSync(join(work, "state-"));
  const sysctl = (value: string) => {
    const file = join(mkdtempSync(join(work, "sysctl-")), "ip_forward");
    writeFileSync(file, value);
    return file;
  };

  it("turns forwarding on when it was off, with the drop of forwarded traffic of no sandbox; off again at close", async () => {
    const ipForward = sysctl("0\n");
    const log: string[] = [];
    const network = await start({ ipForward, forwardingState: stateDir() }, log);
    expect(readFileSync(ipForward, "utf8")).toBe("1\n");
    expect(listTable(network.table)).toMatch(FORWARD_DROP);
    await network.close();
    expect(readFileSync(ipForward, "utf8")).toBe("0\n");
    expect(log.join("\n")).toMatch(/turned on IPv4 forwarding[\s\S]*turned IPv4 forwarding off again/);
  });

  it("leaves forwarding on, and makes no drop, when it was on already", async () => {
    const ipForward = sysctl("1\n");
    const network = await start({ ipForward, forwardingState: stateDir() });
    expect(listTable(network.table)).toContain("chain forward");
    expect(listTable(network.table)).not.toMatch(FORWARD_DROP);
    await network.close();
    expect(readFileSync(ipForward, "utf8")).toBe("1\n");
  });

  it("with two servers, the last to close turns it off; both drop what is no sandbox's", async () => {
    const ipForward = sysctl("0\n");
    const forwardingState = stateDir();
    const first = await start({ ipForward, forwardingState });
    const second = await start({ ipForward, forwardingState });
    expect(listTable(second.table)).toMatch(FORWARD_DROP);
    await first.close();
    expect(readFileSync(ipForward, "utf8")).toBe("1\n");
    await second.close();
    expect(readFileSync(ipForward, "utf8")).toBe("0\n");
  });

  it("moves a sandbox's end into its namespace through the descriptor, never by pid", async () => {
    const calls: { command: string; args: readonly string[]; input?: string; fd?: number }[] = [];
    const real = await start();
    const run: CommandRunner = (command, args, input, fd) => {
      calls.push({ command, args, input, fd });
      return real.run(command, args, input, fd);
    };
    await real.close();
    const network = await start({ run, forwardingState: stateDir(), ipForward: sysctl("1\n") });
    const fd = namespace();
    const link = await network.attach(fd);
    const moved = calls.filter((c) => c.input?.includes("peer name eth0"));
    expect(moved).toHaveLength(1);
    expect(moved[0]?.input).toContain(`link add ${link.iface} type veth peer name eth0 netns /proc/self/fd/3`);
    expect(moved[0]?.fd).toBe(fd);
    expect(calls.filter((c) => /netns \d/.test(`${c.args.join(" ")} ${c.input ?? ""}`))).toEqual([]);
    // (It is there: the sandbox's end, with its address.)
    const name = namespaces.find((n) => n.fd === fd)?.name as string;
    const inside = spawnSync("ip", ["-n", name, "-4", "-br", "addr", "show", "dev", "eth0"], { encoding: "utf8" });
    expect(inside.stdout).toContain(link.address);
    await network.close();
  });

  it("puts a policy given at attach in force in the link's own transaction (no second one)", async () => {
    const calls: { command: string; input?: string }[] = [];
    const real = await start();
    await real.close();
    const run: CommandRunner = (command, args, input, fd) => {
      calls.push({ command, input });
      return real.run(command, args, input, fd);
    };
    const network = await start({ run, forwardingState: stateDir(), ipForward: sysctl("1\n") });
    calls.length = 0;
    const link = await network.attach(namespace(), { blockNetwork: false, cidrAllowlist: ["198.51.100.0/24"] });
    const nft = calls.filter((c) => c.command === "nft");
    expect(nft).toHaveLength(1);
    expect(nft[0]?.input).toContain(`links { "${link.iface}" . ${link.address} }`);
    expect(listTable(network.table)).toContain(`${link.address} . 198.51.100.0/24`);
    expect(link.blocked).toBe(false);
    // The same policy again is no change: nothing is run.
    await link.apply({ blockNetwork: false, cidrAllowlist: ["198.51.100.0/24"] });
    expect(calls.filter((c) => c.command === "nft")).toHaveLength(1);
    // Without one it starts blocked.
    const blocked = await network.attach(namespace());
    expect(blocked.blocked).toBe(true);
    expect(listTable(network.table)).toMatch(new RegExp(`blocked[^}]*${blocked.address.replaceAll(".", "\\.")}`));
    await network.close();
  });

  it("keeps an address whose set elements could not be removed out of use until they are", async () => {
    let failRemovals = false;
    const real = await start();
    await real.close();
    const run: CommandRunner = (command, args, input, fd) =>
      command === "nft" && failRemovals && input?.includes("delete element")
        ? Promise.reject(new Error("nft: injected failure"))
        : real.run(command, args, input, fd);
    const log: string[] = [];
    const network = await start({ run, forwardingState: stateDir(), ipForward: sysctl("1\n"), retryMs: 50 }, log);
    const stale = await network.attach(namespace());
    await stale.apply({ blockNetwork: false, cidrAllowlist: ["198.51.100.0/24"] });
    expect(listTable(network.table)).toContain(`${stale.address} . 198.51.100.0/24`);
    failRemovals = true;
    await stale.detach();
    expect(listTable(network.table)).toContain(`${stale.address} . 198.51.100.0/24`);
    expect(log.join("\n")).toMatch(/not handed out until they are removed/);
    // A /28: 13 addresses for sandboxes; every other one is handed out, never the stale one.
    const others = [];
    for (let i = 0; i < 12; i++) others.push(await network.attach(namespace()));
    expect(others.map((l) => l.address)).not.toContain(stale.address);
    await expect(network.attach(namespace())).rejects.toThrow(/no free address/);
    // Once the elements can be removed, the address is free (and clean) again.
    failRemovals = false;
    await vi.waitFor(() => expect(listTable(network.table)).not.toContain(`${stale.address} . `), { timeout: 10_000 });
    await vi.waitFor(() => expect(log.join("\n")).toMatch(/free again/), { timeout: 10_000 });
    const again = await network.attach(namespace());
    expect(again.address).toBe(stale.address);
    expect(listTable(network.table)).not.toContain("198.51.100.0/24");
    await network.close();
  });
});
