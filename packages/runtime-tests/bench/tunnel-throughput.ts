/**
 * `sb.tunnel` throughput from Node, Deno and Bun against one fake listening in this process
 * (its own process for the clients, unlike packages/node/bench/tunnel.bench.ts): N MiB each
 * way through a tunnel, against a direct loopback TCP copy in the same runtime, same run.
 * Run: `node bench/tunnel-throughput.ts` after a build (SBX_BENCH_TUNNEL_MIB, default 1024;
 * SBX_BENCH_TUNNEL_RUNS, default 3, the best counts; SBX_BENCH_RUNTIMES, default
 * "node,deno,bun"). Prints a table and JSON; asserts nothing.
 */
import { fileURLToPath } from "node:url";
import { MIB, serveFakePorts } from "@sbx/test-fixtures/tunnel-bench";
import { createFakeServer } from "@sbx/testing";
import { bunBinary } from "../src/bun-support.ts";
import { denoBinary, runDeno } from "../src/deno-support.ts";
import { runBinary } from "../src/run-binary.ts";

const MIB_TOTAL = Number(process.env.SBX_BENCH_TUNNEL_MIB ?? 1024);
const RUNTIMES = (process.env.SBX_BENCH_RUNTIMES ?? "node,deno,bun").split(",");
const TOKEN = "bench-token";
const script = fileURLToPath(new URL("tunnel-throughput-runtime.ts", import.meta.url));

const fake = createFakeServer({ token: TOKEN });
serveFakePorts(fake, MIB_TOTAL * MIB);
const { url } = await fake.listen();
const RUNS = Number(process.env.SBX_BENCH_TUNNEL_RUNS ?? 3);
const args = [script, url, TOKEN, String(MIB_TOTAL)];

type Result = { runtime: string; directUp: number; tunnelUp: number; directDown: number; tunnelDown: number };
const parse = (stdout: string, stderr: string): Result => {
  const line = stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(line) as Result;
  } catch {
    throw new Error(`no result:\n${stdout}\n${stderr}`);
  }
};

const results: Result[] = [];
try {
  for (const runtime of RUNTIMES) {
    if (runtime === "node") {
      const run = await runBinary(process.execPath, [...args, "node", String(RUNS)]);
      results.push(parse(run.stdout, run.stderr));
    } else if (runtime === "deno") {
      const deno = denoBinary();
      if (!deno) continue;
      const run = await runDeno(deno, [
        "run",
        "--node-modules-dir=manual",
        "--sloppy-imports",
        "-A",
        ...args,
        "deno",
        String(RUNS),
      ]);
      results.push(parse(run.stdout, run.stderr));
    } else if (runtime === "bun") {
      const bun = bunBinary();
      if (!bun) continue;
      const run = await runBinary(bun, ["run", ...args, "bun", String(RUNS)]);
      results.push(parse(run.stdout, run.stderr));
    }
  }
} finally {
  await fake.close();
}
console.log(
  `sb.tunnel vs direct loopback TCP, ${MIB_TOTAL} MiB each way, best of ${RUNS}, the fake in another process (MiB/s)\n`,
);
console.log("  runtime   direct up  tunnel up  ratio   direct down  tunnel down  ratio");
for (const r of results) {
  console.log(
    `  ${r.runtime.padEnd(8)} ${r.directUp.toFixed(0).padStart(9)} ${r.tunnelUp.toFixed(0).padStart(10)} ${(
      r.tunnelUp / r.directUp
    )
      .toFixed(2)
      .padStart(6)} ${r.directDown.toFixed(0).padStart(13)} ${r.tunnelDown.toFixed(0).padStart(12)} ${(
      r.tunnelDown / r.directDown
    )
      .toFixed(2)
      .padStart(6)}`,
  );
}
console.log(`\n${JSON.stringify({ mib: MIB_TOTAL, results })}`);
