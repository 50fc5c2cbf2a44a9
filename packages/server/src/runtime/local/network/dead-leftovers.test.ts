// A server killed while it ran leaves its links and its nft table behind; the next server given
// the same default slot of addresses (its own while it runs, host-wide) must clear them, or it
// could never start on their routes. Real ip and nft, on a range of the test's own.
import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { realServerAvailable } from "../../../test-support.js";
import { sweepDeadInRange } from "./host-network.js";
import { networkPlan } from "./network-options.js";

const available = await realServerAvailable("network leftover tests");

const sh = (command: string) => spawnSync("sh", ["-c", command], { encoding: "utf8" });
const hex = (address: string) =>
  address
    .split(".")
    .map((octet) => Number(octet).toString(16).padStart(2, "0"))
    .join("");

describe.runIf(available)("a dead server's network leftovers", () => {
  // A /28 of 10.215/16 of this test's own, and one beside it that is not swept.
  const base = `10.215.${process.pid % 250}`;
  const plan = { ...networkPlan({ cidr: `${base}.0/28`, dnsUpstream: ["127.0.0.1:9"] }, 0), slotRange: true };
  const gateway = `${base}.1`;
  const sandbox = `${base}.5`;
  const outside = `${base}.17`;
  const dead = { anchor: `sbx${hex(gateway)}`, link: `sbx${hex(sandbox)}`, other: `sbx${hex(outside)}` };
  const table = `sbx_dead${process.pid.toString(16)}`;
  const otherTable = `sbx_live${process.pid.toString(16)}`;
  afterAll(() => {
    for (const name of Object.values(dead)) sh(`ip link del ${name} 2>/dev/null`);
    sh(`nft delete table inet ${table} 2>/dev/null; nft delete table inet ${otherTable} 2>/dev/null`);
  });

  it("are removed: links named after its addresses, and a table naming its gateway; nothing else", async () => {
    for (const name of Object.values(dead)) {
      expect(sh(`ip link add ${name} type veth peer name ${name}p`).status).toBe(0);
    }
    expect(sh(`ip addr add ${gateway}/32 dev ${dead.anchor} && ip link set ${dead.anchor} up`).status).toBe(0);
    expect(
      sh(
        `nft add table inet ${table} && nft add chain inet ${table} c && nft add rule inet ${table} c ip daddr ${gateway} accept`,
      ).status,
    ).toBe(0);
    expect(
      sh(
        `nft add table inet ${otherTable} && nft add chain inet ${otherTable} c && nft add rule inet ${otherTable} c ip daddr ${outside} accept`,
      ).status,
    ).toBe(0);

    const said: string[] = [];
    await sweepDeadInRange(plan, undefined, { info: (message) => said.push(message) });

    const links = sh("ip -o link show").stdout;
    expect(links).not.toContain(`${dead.anchor}:`);
    expect(links).not.toContain(`${dead.anchor}p`);
    expect(links).not.toContain(`${dead.link}:`);
    expect(links).toContain(`${dead.other}`); // outside the range: another server's
    const tables = sh("nft list tables inet").stdout;
    expect(tables).not.toContain(table);
    expect(tables).toContain(otherTable);
    expect(said.join("\n")).toMatch(/dead server's network leftovers/);
  });
});
