/**
 * Run by Node, Deno and Bun (`tunnel-throughput.ts` starts each): `sb.tunnel` throughput from
 * this runtime to a fake listening in another process, whose port SINK counts what it gets and
 * answers the count, and whose port SOURCE sends N MiB. The baseline is the same sink and
 * source as node:net servers in this runtime (every runtime has node:net), the same run.
 * Args: <endpoint> <token> <MiB> <runtime name> <runs>: the best of the runs counts (the CPU
 * figure is the last run's). Prints one JSON line.
 */
import { connect, createServer, type Server } from "node:net";
import process from "node:process";

export const SINK = 7001;
export const SOURCE = 7002;
const MIB = 1024 * 1024;
const CHUNK = 256 * 1024;

const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ?? (process.argv.slice(2) as string[]);
const [endpoint, token, mibText, runtime, runsText] = args as [string, string, string, string, string];
const RUNS = Number(runsText ?? 1);
const TOTAL = Number(mibText) * MIB;
const block = new Uint8Array(CHUNK).fill(7);

const sdk =
  runtime === "deno"
    ? await import("@sbx/deno")
    : runtime === "bun"
      ? await import("@sbx/bun")
      : await import("@sbx/node");

function upload(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    let answer = "";
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      answer += d;
    });
    socket.on("end", () => {
      socket.end();
      resolve(answer);
    });
    socket.on("error", reject);
    let sent = 0;
    const pump = () => {
      while (sent < TOTAL) {
        sent += CHUNK;
        if (!socket.write(block)) return void socket.once("drain", pump);
      }
      socket.end();
    };
    socket.once("connect", pump);
  });
}

function download(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" });
    let n = 0;
    socket.on("data", (d: Uint8Array) => {
      n += d.length;
    });
    socket.on("end", () => resolve(n));
    socket.on("error", reject);
  });
}

function directServers(): Promise<{ sink: Server; source: Server }> {
  const sink = createServer({ allowHalfOpen: true }, (socket) => {
    let n = 0;
    socket.on("data", (d: Uint8Array) => {
      n += d.length;
    });
    socket.on("end", () => socket.end(String(n)));
  });
  const source = createServer((socket) => {
    let sent = 0;
    const pump = () => {
      while (sent < TOTAL) {
        sent += CHUNK;
        if (!socket.write(block)) return void socket.once("drain", pump);
      }
      socket.end();
    };
    pump();
  });
  return Promise.all(
    [sink, source].map((s) => new Promise<void>((resolve) => s.listen(0, "127.0.0.1", () => resolve()))),
  ).then(() => ({ sink, source }));
}

/** CPU seconds this process spent in the tunnel runs (the client's side), per GiB. */
const clientCpu: Record<string, number> = {};

async function mibPerSecond(fn: () => Promise<unknown>, expected: unknown, cpuKey?: string): Promise<number> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const result = await fn();
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  if (result !== expected) throw new Error(`wrong result ${String(result)}`);
  if (cpuKey) clientCpu[cpuKey] = ((used.user + used.system) / 1e6) * (1024 / (TOTAL / MIB));
  return TOTAL / MIB / seconds;
}

const portOf = (s: Server) => (s.address() as { port: number }).port;
const client = new sdk.SandboxClient({ endpoint, token });
const sandbox = await client.sandboxes.create({ app: "bench" });
const direct = await directServers();
const up = await sandbox.tunnel(SINK);
const down = await sandbox.tunnel(SOURCE);
const best = { directUp: 0, tunnelUp: 0, directDown: 0, tunnelDown: 0 };
for (let run = 0; run < RUNS; run++) {
  // Direct and tunnel runs alternate, so a neighbour's load falls on both alike.
  best.directUp = Math.max(best.directUp, await mibPerSecond(() => upload(portOf(direct.sink)), String(TOTAL)));
  best.tunnelUp = Math.max(best.tunnelUp, await mibPerSecond(() => upload(up.localPort), String(TOTAL), "up"));
  best.directDown = Math.max(best.directDown, await mibPerSecond(() => download(portOf(direct.source)), TOTAL));
  best.tunnelDown = Math.max(best.tunnelDown, await mibPerSecond(() => download(down.localPort), TOTAL, "down"));
}
const result = { runtime, ...best, clientCpuPerGib: clientCpu };
await up.close();
await down.close();
direct.sink.close();
direct.source.close();
await sandbox.terminate();
await client.close();
console.log(JSON.stringify(result));
process.exit(0);
