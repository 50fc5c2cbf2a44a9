/**
 * What the `sb.tunnel` benchmarks share (packages/node/bench/tunnel.bench.ts, and
 * packages/runtime-tests/bench/tunnel-throughput*.ts in Node, Deno and Bun: node:net and
 * node:buffer only): the three ports a sandbox serves (a SINK that counts what it gets and
 * answers the count when the client ends, a SOURCE that sends N bytes, an ECHO), as the fake's
 * port handlers and as plain loopback TCP servers (the baseline); the local clients that drive
 * them; and the timing of direct and tunnel runs side by side.
 */
import { Buffer } from "node:buffer";
import { connect, createServer, type Server, type Socket } from "node:net";
import process from "node:process";

export const MIB = 1024 * 1024;
/** The size of every write. */
export const CHUNK = 256 * 1024;
export const SINK = 7001;
export const SOURCE = 7002;
export const ECHO = 7003;
const block = new Uint8Array(CHUNK).fill(7);

/** Writes `total` bytes (CHUNK at a time, minding backpressure) to `socket`, then ends it. */
function sendAndEnd(socket: Socket, total: number): void {
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      sent += CHUNK;
      if (!socket.write(block)) return void socket.once("drain", pump);
    }
    socket.end();
  };
  pump();
}

/** Sends `total` bytes to a SINK at `port` and half-closes; resolves with what came back. */
export function upload(port: number, total: number): Promise<string> {
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
    socket.once("connect", () => sendAndEnd(socket, total));
  });
}

/** Reads a SOURCE at `port` to its end; resolves with the byte count. */
export function download(port: number): Promise<number> {
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

/** `bytes` bytes of connection `i`'s own pattern. */
export function patternOf(i: number, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += 4) out.writeUInt32LE((at * 2654435761 + i) >>> 0, at);
  return out;
}

/** Sends `payload` to an ECHO at `port` and checks every byte that comes back. */
export function echoChecked(port: number, payload: Buffer): Promise<void> {
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

/** The baseline's sink, source (of `total` bytes) and echo as loopback TCP servers: their ports. */
export async function directServers(
  total: number,
): Promise<{ readonly sink: number; readonly source: number; readonly echo: number; close(): void }> {
  const sink = createServer({ allowHalfOpen: true }, (socket) => {
    let n = 0;
    socket.on("data", (d: Uint8Array) => {
      n += d.length;
    });
    socket.on("end", () => socket.end(String(n)));
  });
  const source = createServer((socket) => sendAndEnd(socket, total));
  const echo = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
  const servers = [sink, source, echo];
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.listen(0, "127.0.0.1", () => resolve()))));
  const portOf = (s: Server) => (s.address() as { port: number }).port;
  return {
    sink: portOf(sink),
    source: portOf(source),
    echo: portOf(echo),
    close: () => {
      for (const server of servers) server.close();
    },
  };
}

/** One connection to a fake's port, as `onPortConnection` hands it over. */
interface PortConnection {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}

/** Serves SINK, SOURCE (of `total` bytes) and ECHO from `fake` (`@sbx/testing`'s fake server). */
export function serveFakePorts(
  fake: { onPortConnection(port: number, handler: (connection: PortConnection) => Promise<void>): void },
  total: number,
): void {
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
    for (let sent = 0; sent < total; sent += CHUNK) await writer.write(block);
    await writer.close();
  });
  fake.onPortConnection(ECHO, ({ readable, writable }) => readable.pipeTo(writable));
}

export interface Rate {
  /** MiB/s, the best run's. */
  readonly mibs: number;
  /** CPU seconds of this process (whatever runs in it) per GiB, the best run's. */
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

export interface Comparison {
  readonly direct: Rate;
  readonly tunnel: Rate;
  /** The tunnel's MiB/s ÷ the direct copy's. */
  readonly ratio: number;
}

/**
 * A direct copy of `mib` MiB and the same through the tunnel, their `runs` runs interleaved (so
 * a neighbour's load falls on both alike); the best run of each. Prints a line.
 */
export async function compare(
  what: string,
  mib: number,
  runs: number,
  direct: () => Promise<unknown>,
  tunnel: () => Promise<unknown>,
  check: (r: unknown) => boolean,
): Promise<Comparison> {
  const best = (a: Rate | undefined, b: Rate): Rate =>
    a ? { mibs: Math.max(a.mibs, b.mibs), cpuPerGib: Math.min(a.cpuPerGib, b.cpuPerGib) } : b;
  let d: Rate | undefined;
  let t: Rate | undefined;
  for (let run = 0; run < runs; run++) {
    d = best(d, await once(mib, direct, check));
    t = best(t, await once(mib, tunnel, check));
  }
  const [directRate, tunnelRate] = [d as Rate, t as Rate];
  const ratio = tunnelRate.mibs / directRate.mibs;
  const show = (r: Rate) => `${r.mibs.toFixed(0).padStart(5)} MiB/s, ${r.cpuPerGib.toFixed(2)} CPU s/GiB`;
  console.log(`${what.padEnd(26)} direct ${show(directRate)} | tunnel ${show(tunnelRate)} | ÷ ${ratio.toFixed(3)}`);
  return { direct: directRate, tunnel: tunnelRate, ratio };
}
