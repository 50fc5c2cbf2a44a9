// The host side of sandboxes' networks on its own (real nft, ip, conntrack; a range and an
// instance of the test's own): IPv4 forwarding turned on only with the drop of what is no
// sandbox's, and off again at close (on a stand-in sysctl file: the host's own is shared by
// every server here).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { realServerAvailable } from "../../../test-support.js";
import { HostNetwork, type HostNetworkSeams } from "./host-network.js";
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
});
