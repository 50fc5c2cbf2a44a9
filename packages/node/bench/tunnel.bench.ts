// sb.tunnel throughput against fake.listen() (the tunnel route the sbx server mounts, the
// fake's port registry behind it), with a direct loopback TCP copy of the same bytes measured
// in the same run as the baseline, the client, the fake and the baseline's servers all in this
// one process (one thread, as the direct copy's two ends are):
//   upload:   a local client writes N MiB into the tunnel; the sandbox's port (an
//             onPortConnection sink) counts them and answers the count when the client ends;
//   download: the sandbox's port writes N MiB; the local client reads them to the end;
//   100 at once: 100 local connections through one tunnel (one connection to the server),
//             each sending M MiB to an echo and reading them back, every byte checked.
// Run: node packages/node/bench/tunnel.bench.ts (SBX_BENCH_TUNNEL_MIB, default 1024;
// SBX_BENCH_TUNNEL_RUNS, default 3, the best run counts; SBX_BENCH_TUNNEL_EACH_MIB, default 4;
// SBX_BENCH_TUNNEL_ONLY, default "up,down,many": the parts to run).
// Direct and tunnel runs alternate; each reports its best run's MiB/s and CPU seconds per GiB
// (this process's: on a busy machine the CPU cost varies less than the rate). Prints a line per
// part and JSON; asserts nothing but the bytes.
import { connect, createServer, type Server } from "node:net";
import { SandboxClient } from "@sbx/node";
import { createFakeServer } from "@sbx/testing";

const MIB = 1024 * 1024;
const TOTAL_MIB = Number(process.env.SBX_BENCH_TUNNEL_MIB ?? 1024);
const RUNS = Number(process.env.SBX_BENCH_TUNNEL_RUNS ?? 3);
const EACH_MIB = Number(process.env.SBX_BENCH_TUNNEL_EACH_MIB ?? 4);
const CONNECTIONS = 100;
const TOTAL = TOTAL_MIB * MIB;
const CHUNK = 256 * 1024;
const SINK = 7001;
const SOURCE = 7002;
const ECHO = 7003;
const block = new Uint8Array(CHUNK).fill(7);

// The sandbox side, in the fake: a sink that answers its byte count, a source, an echo.
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
fake.onPortConnection(ECHO, async ({ readable, writable }) => {
  await readable.pipeTo(writable);
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

/** `bytes` bytes of connection `i`'s own pattern. */
function patternOf(i: number, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += 4) out.writeUInt32LE((at * 2654435761 + i) >>> 0, at);
  return out;
}

/** Sends `payload` to an echo at `port` and checks every byte that comes back. */
function echoChecked(port: number, payload: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    let at = 0;
    socket.on("data", (d: Buffer) => {
      if (!d.equals(payload.subarray(at, at + d.length))) reject(new Error(`bytes differ at ${at}`));
      at += d.length;
    });
    socket.on("end", () => {
      socket.end();
      if (at === payload.length) resolve();
      else reject(new Error(`${at} of ${payload.length} bytes came back`));
    });
    socket.on("error", reject);
    socket.once("connect", () => socket.end(payload));
  });
}

/** The baseline: the same sink, source and echo as plain loopback TCP servers. */
function directServers(): Promise<{ sink: Server; source: Server; echo: Server }> {
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
  const echo = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
  return Promise.all(
    [sink, source, echo].map((s) => new Promise<void>((resolve) => s.listen(0, "127.0.0.1", () => resolve()))),
  ).then(() => ({ sink, source, echo }));
}

interface Rate {
  /** MiB/s, the best run's. */
  readonly mibs: number;
  /** CPU seconds (this process: client, fake and direct servers alike) per GiB, the best run's. */
  readonly cpuPerGib: number;
}

/** One run of `fn`: its MiB/s and the CPU it took. */
async function once(mib: number, fn: () => Promise<unknown>, check: (r: unknown) => boolean): Promise<Rate> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const result = await fn();
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  if (!check(result)) throw new Error(`wrong result ${String(result)}`);
  return { mibs: mib / seconds, cpuPerGib: ((used.user + used.system) / 1e6) * (1024 / mib) };
}

/**
 * A direct copy and the same through the tunnel, their runs interleaved (so a neighbour's load
 * falls on both alike); the best of RUNS of each.
 */
async function compare(
  what: string,
  mib: number,
  direct: () => Promise<unknown>,
  tunnel: () => Promise<unknown>,
  check: (r: unknown) => boolean,
): Promise<{ direct: Rate; tunnel: Rate; ratio: number }> {
  const best = (a: Rate | undefined, b: Rate): Rate =>
    a ? { mibs: Math.max(a.mibs, b.mibs), cpuPerGib: Math.min(a.cpuPerGib, b.cpuPerGib) } : b;
  let d: Rate | undefined;
  let t: Rate | undefined;
  for (let run = 0; run < RUNS; run++) {
    d = best(d, await once(mib, direct, check));
    t = best(t, await once(mib, tunnel, check));
  }
  const [directRate, tunnelRate] = [d as Rate, t as Rate];
  const ratio = tunnelRate.mibs / directRate.mibs;
  const show = (r: Rate) => `${r.mibs.toFixed(0).padStart(5)} MiB/s, ${r.cpuPerGib.toFixed(2)} CPU s/GiB`;
  console.log(`${what.padEnd(26)} direct ${show(directRate)} | tunnel ${show(tunnelRate)} | ÷ ${ratio.toFixed(3)}`);
  return { direct: directRate, tunnel: tunnelRate, ratio };
}

const portOf = (s: Server) => (s.address() as { port: number }).port;
const direct = await directServers();
const upTunnel = await sandbox.tunnel(SINK);
const downTunnel = await sandbox.tunnel(SOURCE);
const echoTunnel = await sandbox.tunnel(ECHO);
const payloads = Array.from({ length: CONNECTIONS }, (_, i) => patternOf(i, EACH_MIB * MIB));
const allAtOnce = (port: number) => () => Promise.all(payloads.map((p) => echoChecked(port, p)));
console.log(
  `sb.tunnel vs direct loopback TCP (fake.listen(), Node ${process.version}, best of ${RUNS}): ` +
    `${TOTAL_MIB} MiB each way; ${CONNECTIONS} connections at once, ${EACH_MIB} MiB each to an echo and back`,
);
const only = (process.env.SBX_BENCH_TUNNEL_ONLY ?? "up,down,many").split(",");
const results: Record<string, Awaited<ReturnType<typeof compare>>> = {};
if (only.includes("up")) {
  const sent = (r: unknown) => r === String(TOTAL);
  results.upload = await compare(
    "upload",
    TOTAL_MIB,
    () => upload(portOf(direct.sink)),
    () => upload(upTunnel.localPort),
    sent,
  );
}
if (only.includes("down")) {
  const got = (r: unknown) => r === TOTAL;
  results.download = await compare(
    "download",
    TOTAL_MIB,
    () => download(portOf(direct.source)),
    () => download(downTunnel.localPort),
    got,
  );
}
if (only.includes("many")) {
  results.manyAtOnce = await compare(
    `${CONNECTIONS} at once (each way)`,
    CONNECTIONS * EACH_MIB,
    allAtOnce(portOf(direct.echo)),
    allAtOnce(echoTunnel.localPort),
    () => true,
  );
}
console.log(JSON.stringify({ mib: TOTAL_MIB, runs: RUNS, eachMib: EACH_MIB, connections: CONNECTIONS, ...results }));

await upTunnel.close();
await downTunnel.close();
await echoTunnel.close();
for (const server of Object.values(direct)) server.close();
await client.close();
await fake.close();
