/**
 * sb.tunnel in Deno or Bun, through @sbx/deno / @sbx/bun, against a fake (behind a TCP proxy the
 * Node side controls) whose port ECHO echoes, or sends without end to a connection whose
 * first byte is "S": `deno run … src/tunnel-entry.ts deno '<target JSON>' <control URL>` or
 * `bun src/tunnel-entry.ts bun '<target JSON>' <control URL>`. Through one tunnel (node:net,
 * which both runtimes have, for the local clients): 100 connections at once, each its own
 * bytes back; a connection that is never read beside one that carries 8 MiB; a connection cut
 * mid-stream when the Node side cuts the proxy's connections (POST <control>/cut), and one
 * after it. Prints RESULT_PREFIX + JSON of what it saw.
 */
import { connect } from "node:net";
import process from "node:process";
import { RESULT_PREFIX } from "./remote-suite.js";
import type { RemoteTarget } from "./targets.js";

const ECHO_PORT = 7000;

const [runtime, targetJson, control] = process.argv.slice(2);
const target = JSON.parse(targetJson ?? "{}") as RemoteTarget;
const sdk = runtime === "deno" ? await import("@sbx/deno") : await import("@sbx/bun");

/** `length` bytes of a pattern of its own for `seed`, never starting with "S". */
function bytesFor(seed: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 7 + (i >> 10)) & 0xff;
  bytes[0] = 0x45;
  return bytes;
}

const equal = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);

/** Sends `bytes`, ends its side, and resolves with all that came back. */
const roundTrip = (port: number, bytes: Uint8Array): Promise<Uint8Array> =>
  new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => socket.end(bytes));
    const parts: Uint8Array[] = [];
    socket.on("data", (d: Uint8Array) => parts.push(d));
    socket.on("end", () => {
      socket.end();
      const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.byteLength;
      }
      resolve(all);
    });
    socket.on("error", reject);
  });

await using client = new sdk.SandboxClient({ endpoint: target.url, token: target.token });
await using sb = await client.sandboxes.create({ timeoutMs: 120_000 });
const tunnel = await sb.tunnel(ECHO_PORT);

// 100 at once, one of them 3 MiB.
const payloads = Array.from({ length: 100 }, (_, i) => bytesFor(i, i === 0 ? 3 * 1024 * 1024 : 16 * 1024 + i));
const answers = await Promise.all(payloads.map((p) => roundTrip(tunnel.localPort, p)));
const intact = answers.filter((a, i) => equal(a, payloads[i] as Uint8Array)).length;

// A connection nobody reads (its window and buffers fill) beside one that carries 8 MiB.
const stalled = connect({ port: tunnel.localPort, host: "127.0.0.1" });
stalled.on("error", () => {});
stalled.write("S");
stalled.pause();
await new Promise<void>((resolve) => stalled.once("readable", () => resolve()));
const big = bytesFor(1, 8 * 1024 * 1024);
const bigIntact = equal(await roundTrip(tunnel.localPort, big), big);
stalled.destroy();

// Cut mid-stream: the local connection ends with an error (Bun: a reset) or, in Deno, which
// cannot send a reset, an end; then new connections work again.
const cut = connect({ port: tunnel.localPort, host: "127.0.0.1", allowHalfOpen: true });
const cutEnded = new Promise<string>((resolve) => {
  cut.on("error", (error: { code?: string }) => resolve(error.code ?? "error"));
  cut.on("end", () => resolve("end"));
});
cut.write("mid-stream");
await new Promise<void>((resolve) => cut.once("data", () => resolve()));
await fetch(`${control}/cut`, { method: "POST" });
const afterCut = await cutEnded;
const again = bytesFor(2, 1000);
const afterDrop = equal(await roundTrip(tunnel.localPort, again), again);

await tunnel.close();
const afterClose = await roundTrip(tunnel.localPort, again).then(
  () => "connected",
  (error: { code?: string }) => error.code ?? "error",
);
console.log(
  RESULT_PREFIX + JSON.stringify({ localPort: tunnel.localPort, intact, bigIntact, afterCut, afterDrop, afterClose }),
);
process.exit(0);
