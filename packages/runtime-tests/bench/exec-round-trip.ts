/**
 * The exec round trip from every runtime against the same server, side by side: one
 * `sbx server` (its own process), then `exec(["true"])` → `wait()` on a running sandbox, 200
 * times after a warm-up, from Node (@sbx/node), Deno (the `deno` npm package's binary), Bun
 * (the `bun` npm package's binary) and headless Chromium (Debian's, via playwright-core; the
 * page is served from another origin, so Connect over HTTP/1.1 with CORS, as browsers use it).
 * Every runtime runs the same code (exec-round-trip-runtime.ts through `@sbx/client`), one
 * after the other. Baseline: Node's figure in the same run.
 *
 * Run: `pnpm bench` (this package's `bench` script) or `node bench/exec-round-trip.ts` after a
 * build, as root. SBX_BENCH_ROUNDS (default 200). Prints a table and JSON; asserts nothing.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startSbxServer } from "@sbx/test-fixtures/sbx-server";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { bunBinary } from "../src/bun-support.ts";
import { denoBinary, runDeno } from "../src/deno-support.ts";
import { runBinary } from "../src/run-binary.ts";
import { measureExecRoundTrip, type RoundTrip } from "./exec-round-trip-runtime.ts";

const ROUNDS = Number(process.env.SBX_BENCH_ROUNDS ?? 200);
const here = fileURLToPath(new URL(".", import.meta.url));
const runtimeScript = join(here, "exec-round-trip-runtime.ts");
const mainScript = join(here, "exec-round-trip-main.ts");

const lastJson = (stdout: string): RoundTrip => JSON.parse(stdout.trim().split("\n").at(-1) ?? "null");

async function inDeno(endpoint: string, token: string): Promise<RoundTrip> {
  const deno = denoBinary();
  if (!deno) throw new Error("no deno binary");
  const host = new URL(endpoint).host;
  const run = await runDeno(deno, [
    "run",
    "--node-modules-dir=manual",
    `--allow-net=${host}`,
    mainScript,
    endpoint,
    token,
    String(ROUNDS),
  ]);
  return lastJson(run.stdout);
}

async function inBun(endpoint: string, token: string): Promise<RoundTrip> {
  const bun = bunBinary();
  if (!bun) throw new Error("no bun binary");
  return lastJson((await runBinary(bun, ["run", mainScript, endpoint, token, String(ROUNDS)])).stdout);
}

async function inChromium(endpoint: string, token: string): Promise<RoundTrip> {
  const bundled = await build({
    entryPoints: [runtimeScript],
    bundle: true,
    write: false,
    format: "iife",
    globalName: "sbxBench",
    platform: "browser",
    logLevel: "silent",
  });
  const script = (bundled.outputFiles[0]?.text ?? "").replace(/<\/script/gi, "<\\/script");
  const body = `<!doctype html><script>${script}</script>`;
  const site = createServer((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end(body));
  await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  try {
    const tab = await browser.newPage();
    await tab.goto(`http://localhost:${(site.address() as AddressInfo).port}/`);
    return await tab.evaluate(
      ([e, t, n]) =>
        (
          window as unknown as {
            sbxBench: { measureExecRoundTrip(e: string, t: string, n: number): Promise<RoundTrip> };
          }
        ).sbxBench.measureExecRoundTrip(e, t, n),
      [endpoint, token, ROUNDS] as [string, string, number],
    );
  } finally {
    await browser.close();
    site.close();
  }
}

const server = await startSbxServer({ prefix: "sbx-bench-runtimes-" });
try {
  const results: Record<string, RoundTrip> = {};
  results.node = await measureExecRoundTrip(server.endpoint, server.token, ROUNDS);
  results.deno = await inDeno(server.endpoint, server.token);
  results.bun = await inBun(server.endpoint, server.token);
  results.chromium = await inChromium(server.endpoint, server.token);
  const node = results.node;
  console.log(`exec(["true"]) → wait(), ${ROUNDS} rounds each, one server, one runtime at a time\n`);
  console.log("  runtime     p50 ms   p99 ms  mean ms   p50 / node");
  for (const [name, r] of Object.entries(results)) {
    console.log(
      `  ${name.padEnd(10)} ${r.p50.toFixed(2).padStart(7)}  ${r.p99.toFixed(2).padStart(7)}  ${r.mean
        .toFixed(2)
        .padStart(7)}   ${(r.p50 / node.p50).toFixed(2).padStart(6)}`,
    );
  }
  console.log(`\n${JSON.stringify({ rounds: ROUNDS, ...results })}`);
} finally {
  await server.close();
}
