/**
 * Run by Node, Deno and Bun (`tunnel-throughput.ts` starts each): `sb.tunnel` throughput from
 * this runtime to a fake listening in another process, whose port SINK counts what it gets and
 * answers the count, and whose port SOURCE sends N MiB. The baseline is the same sink and
 * source as node:net servers in this runtime (every runtime has node:net), the same run.
 * Args: <endpoint> <token> <MiB> <runtime name> <runs>: the best of the runs counts (its MiB/s,
 * and the least CPU this process spent in a tunnel run: the client's side). Prints one JSON line.
 */
import process from "node:process";
import { compare, directServers, download, MIB, SINK, SOURCE, upload } from "@sbx/test-fixtures/tunnel-bench";

const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ?? (process.argv.slice(2) as string[]);
const [endpoint, token, mibText, runtime, runsText] = args as [string, string, string, string, string];
const RUNS = Number(runsText ?? 1);
const TOTAL_MIB = Number(mibText);
const TOTAL = TOTAL_MIB * MIB;

const sdk =
  runtime === "deno"
    ? await import("@sbx/deno")
    : runtime === "bun"
      ? await import("@sbx/bun")
      : await import("@sbx/node");

const client = new sdk.SandboxClient({ endpoint, token });
const sandbox = await client.sandboxes.create({ app: "bench" });
const direct = await directServers(TOTAL);
const upTunnel = await sandbox.tunnel(SINK);
const downTunnel = await sandbox.tunnel(SOURCE);
const uploaded = await compare(
  "upload",
  TOTAL_MIB,
  RUNS,
  () => upload(direct.sink, TOTAL),
  () => upload(upTunnel.localPort, TOTAL),
  (r) => r === String(TOTAL),
);
const downloaded = await compare(
  "download",
  TOTAL_MIB,
  RUNS,
  () => download(direct.source),
  () => download(downTunnel.localPort),
  (r) => r === TOTAL,
);
const result = {
  runtime,
  directUp: uploaded.direct.mibs,
  tunnelUp: uploaded.tunnel.mibs,
  directDown: downloaded.direct.mibs,
  tunnelDown: downloaded.tunnel.mibs,
  clientCpuPerGib: { up: uploaded.tunnel.cpuPerGib, down: downloaded.tunnel.cpuPerGib },
};
await upTunnel.close();
await downTunnel.close();
direct.close();
await sandbox.terminate();
await client.close();
console.log(JSON.stringify(result));
process.exit(0);
