// The exec round trip from Bun against a real server: `exec(["true"])` → `wait()` through
// @sbx/bun, against a baseline measured in the same run (`Bun.spawn(["true"])` → `exited` on
// this machine). Also the transports Bun could use, side by side in the same run (the reason
// @sbx/bun speaks Connect over `fetch`, see its README): Connect over Bun's fetch
// (@connectrpc/connect-web, HTTP/1.1) and @connectrpc/connect-node on Bun's node:http2 and
// node:http; for each, the exec round trip and output through ReadOutput (Connect, no raw route).
//
// Node's figure for the same round trip (@sbx/node, baseline `spawn("true")`) comes from this
// same file run by Node against the same server, right after Bun's.
//
// Run: bun packages/runtime-tests/bench/bun-exec.ts (after a build; `node` on PATH). Starts
// `sbx server` with Node unless SBX_ENDPOINT / SBX_TOKEN name one. SBX_BENCH_ROUNDS (default
// 200), SBX_BENCH_STREAM_MIB (default 128). Prints JSON; asserts nothing.
import { spawn } from "node:child_process";
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport as createNodeConnectTransport } from "@connectrpc/connect-node";
import { createBunTransport, SandboxClient } from "@sbx/bun";
import { SandboxClient as CoreSandboxClient, type Sandbox } from "@sbx/core";
import { connectClients } from "@sbx/core/connect";
import { SandboxClient as NodeSandboxClient } from "@sbx/node";
import { startSbxServer } from "@sbx/test-fixtures/sbx-server";

const ROUNDS = Number(process.env.SBX_BENCH_ROUNDS ?? 200);
const STREAM_MIB = Number(process.env.SBX_BENCH_STREAM_MIB ?? 128);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return +(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0).toFixed(2);
};
interface Stats {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
}
const stats = (xs: number[]): Stats => ({ n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) });
const inBun = (globalThis as { Bun?: unknown }).Bun !== undefined;

async function startServer(): Promise<{ endpoint: string; token: string; close: () => Promise<void> }> {
  if (process.env.SBX_ENDPOINT) {
    return { endpoint: process.env.SBX_ENDPOINT, token: process.env.SBX_TOKEN ?? "", close: async () => {} };
  }
  const server = await startSbxServer({ prefix: "sbx-bench-bun-" });
  return { endpoint: server.endpoint, token: server.token, close: () => server.close() };
}

async function execTrueWait(sb: Sandbox): Promise<number> {
  const start = performance.now();
  await (await sb.exec(["true"])).wait();
  return performance.now() - start;
}

/** The runtime's own fork/exec of `true`: Bun.spawn in Bun, child_process.spawn in Node. */
async function spawnTrue(): Promise<number> {
  const start = performance.now();
  if (inBun) await Bun.spawn(["true"], { stdio: ["ignore", "ignore", "ignore"] }).exited;
  else await new Promise((resolve) => spawn("true").on("exit", resolve));
  return performance.now() - start;
}

/** exec true → wait through `sb`, `ROUNDS` times after a warm-up, interleaved with the baseline. */
async function execRounds(sb: Sandbox): Promise<{ rawSpawnTrue: Stats; sbx: Stats }> {
  for (let i = 0; i < 20; i++) await execTrueWait(sb);
  const baseline: number[] = [];
  const sbx: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    baseline.push(await spawnTrue());
    sbx.push(await execTrueWait(sb));
  }
  return { rawSpawnTrue: stats(baseline), sbx: stats(sbx) };
}

/** This file run by Node (see the top): @sbx/node's round trip, as one JSON line. */
async function nodePart(): Promise<void> {
  await using client = new NodeSandboxClient();
  await using sb = await client.sandboxes.create({ app: "bench" });
  console.log(JSON.stringify({ runtime: `node ${process.versions.node}`, execTrueWaitMs: await execRounds(sb) }));
}

/** Runs this file in Node against `endpoint` and returns what it measured. */
function runNodePart(endpoint: string, token: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn("node", [import.meta.path], {
      env: { ...process.env, SBX_ENDPOINT: endpoint, SBX_TOKEN: token },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`node exited ${code}`))));
  });
}

/** MB/s of `head -c STREAM_MIB MiB /dev/zero` read whole through `sb`'s client. */
async function outputMBps(sb: Sandbox): Promise<number> {
  const start = performance.now();
  const p = await sb.exec(["head", "-c", `${STREAM_MIB}M`, "/dev/zero"], { mode: "binary" });
  const bytes = (await p.stdout.readBytes()).byteLength;
  await p.wait();
  return +(bytes / 1e6 / ((performance.now() - start) / 1000)).toFixed(1);
}

if (!inBun) {
  await nodePart();
} else {
  const server = await startServer();
  const { endpoint, token } = server;
  const results: Record<string, unknown> = { runtime: `bun ${Bun.version}`, rounds: ROUNDS };
  try {
    // 1. exec true → wait through @sbx/bun as users get it, then through @sbx/node in Node.
    {
      await using client = new SandboxClient({ endpoint, token });
      await using sb = await client.sandboxes.create({ app: "bench" });
      results.execTrueWaitMs = await execRounds(sb);
    }
    results.node = await runNodePart(endpoint, token);

    // 2. The transports, in rounds that take turns so a noisy minute hurts them alike.
    const transports: Record<string, (endpoint: string) => Transport> = {
      "connect-web over fetch (HTTP/1.1), @sbx/bun's": (e) => createBunTransport(e),
      "connect-node, node:http2": (e) =>
        createNodeConnectTransport({ baseUrl: e, httpVersion: "2", acceptCompression: [] }),
      "connect-node, node:http (HTTP/1.1)": (e) =>
        createNodeConnectTransport({ baseUrl: e, httpVersion: "1.1", acceptCompression: [] }),
    };
    const clients = Object.entries(transports).map(([name, createTransport]) => ({
      name,
      // No raw HTTP: every byte goes through the transport under test.
      client: new CoreSandboxClient({ endpoint, token }, { createClients: (e) => connectClients(createTransport(e)) }),
    }));
    const measured = new Map<string, { exec: number[]; mbps: number[] }>();
    try {
      const sandboxes = await Promise.all(clients.map(({ client }) => client.sandboxes.create({ app: "bench" })));
      for (const sb of sandboxes) for (let i = 0; i < 10; i++) await execTrueWait(sb);
      const perRound = Math.max(1, Math.floor(ROUNDS / 4));
      for (let round = 0; round < 4; round++) {
        for (const [i, { name }] of clients.entries()) {
          const sb = sandboxes[i]!;
          const m = measured.get(name) ?? { exec: [], mbps: [] };
          for (let j = 0; j < perRound; j++) m.exec.push(await execTrueWait(sb));
          m.mbps.push(await outputMBps(sb));
          measured.set(name, m);
        }
      }
      await Promise.all(sandboxes.map((sb) => sb.terminate()));
    } finally {
      await Promise.all(clients.map(({ client }) => client.close()));
    }
    results.transports = Object.fromEntries(
      [...measured].map(([name, m]) => [
        name,
        { execTrueWaitMs: stats(m.exec), readOutputMBps: { runs: m.mbps, median: pct(m.mbps, 50) } },
      ]),
    );
  } finally {
    await server.close();
  }
  console.log(JSON.stringify(results, null, 2));
}
