// sb.tunnel throughput against fake.listen() (the WebSocket route the sbx server mounts, the
// fake's port registry behind it), with a direct loopback TCP copy of the same bytes measured
// in the same run as the baseline:
//   upload:   a local client writes N MiB into the tunnel; the sandbox's port (an
//             onPortConnection sink) counts them and answers the count when the client ends;
//   download: the sandbox's port writes N MiB; the local client reads them to the end.
// Run: node packages/node/bench/tunnel.bench.ts (SBX_BENCH_TUNNEL_MIB, default 1024). Prints
// MiB/s and ratios; asserts nothing.
import { connect, createServer, type Server } from "node:net";
import { SandboxClient } from "@sbx/node";
import { createFakeServer } from "@sbx/testing";

const MIB = 1024 * 1024;
const TOTAL_MIB = Number(process.env.SBX_BENCH_TUNNEL_MIB ?? 1024);
const TOTAL = TOTAL_MIB * MIB;
const CHUNK = 256 * 1024;
const SINK = 7001;
const SOURCE = 7002;
const block = new Uint8Array(CHUNK).fill(7);

// The sandbox side, in the fake: a sink that answers its byte count, and a source.
const fake = createFakeServer();
fake.onPortConnection(SINK, async ({ readable, writable }) => {
  let n = 0;
  const reader = readable.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) n += next.value.byteLength;
  const writer = writable.getWriter();
  await writer.write(new TextEncoder().encode(String(n)));
  await writer.close();
});
fake.onPortConnection(SOURCE, async ({ writable }) => {
  const writer = writable.getWriter();
  for (let sent = 0; sent < TOTAL; sent += CHUNK) await writer.write(block);
  await writer.close();
});
const { url } = await fake.listen();
const client = new SandboxClient({ endpoint: url });
const sandbox = await client.sandboxes.create({ app: "bench" });

/** Sends TOTAL bytes to `port` and half-closes; resolves with what came back. */
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

/** Reads `port` to its end; resolves with the byte count. */
function download(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" });
    let n = 0;
    socket.on("data", (d: Buffer) => {
      n += d.length;
    });
    socket.on("end", () => resolve(n));
    socket.on("error", reject);
  });
}

/** The baseline: the same sink and source as plain loopback TCP servers. */
function directServers(): Promise<{ sink: Server; source: Server }> {
  const sink = createServer({ allowHalfOpen: true }, (socket) => {
    let n = 0;
    socket.on("data", (d: Buffer) => {
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

async function rate(what: string, fn: () => Promise<unknown>, check: (r: unknown) => boolean): Promise<number> {
  const start = performance.now();
  const result = await fn();
  const seconds = (performance.now() - start) / 1000;
  if (!check(result)) throw new Error(`${what}: wrong result ${String(result)}`);
  const mibs = TOTAL_MIB / seconds;
  console.log(`${what.padEnd(24)} ${mibs.toFixed(0).padStart(6)} MiB/s  (${seconds.toFixed(2)} s)`);
  return mibs;
}

const portOf = (s: Server) => (s.address() as { port: number }).port;
const direct = await directServers();
const upTunnel = await sandbox.tunnel(SINK);
const downTunnel = await sandbox.tunnel(SOURCE);
console.log(`sb.tunnel vs direct loopback TCP, ${TOTAL_MIB} MiB each way (fake.listen(), Node ${process.version})`);
const directUp = await rate(
  "direct upload",
  () => upload(portOf(direct.sink)),
  (r) => r === String(TOTAL),
);
const tunnelUp = await rate(
  "tunnel upload",
  () => upload(upTunnel.localPort),
  (r) => r === String(TOTAL),
);
const directDown = await rate(
  "direct download",
  () => download(portOf(direct.source)),
  (r) => r === TOTAL,
);
const tunnelDown = await rate(
  "tunnel download",
  () => download(downTunnel.localPort),
  (r) => r === TOTAL,
);
console.log(`tunnel ÷ direct, upload:   ${(tunnelUp / directUp).toFixed(3)}`);
console.log(`tunnel ÷ direct, download: ${(tunnelDown / directDown).toFixed(3)}`);

await upTunnel.close();
await downTunnel.close();
direct.sink.close();
direct.source.close();
await client.close();
await fake.close();
