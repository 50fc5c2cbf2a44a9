// The exec round trip from Deno against a real server, next to Node's in the same run:
// `exec(["true"])` → `wait()` on a running sandbox, through @sbx/deno (in Deno) and @sbx/node
// (in Node), each interleaved with its runtime's own baseline (spawning `true` locally).
//
// Run: node packages/runtime-tests/bench/deno-exec.ts (after a build). Starts `sbx server` as
// its own process unless SBX_ENDPOINT / SBX_TOKEN name one, then runs this same file in Deno
// (the `deno` npm package's binary). SBX_BENCH_ROUNDS (default 200). Prints JSON; asserts nothing.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Sandbox, SandboxClient } from "@sbx/core";

/** The bits of Deno this file uses when Deno runs it (tsc builds it without Deno's types). */
interface DenoApi {
  readonly args: readonly string[];
  readonly version: { readonly deno: string };
  Command: new (
    command: string,
    options: { stdout: "null"; stderr: "null" },
  ) => { output(): Promise<{ readonly success: boolean }> };
}
const Deno = (globalThis as { Deno?: DenoApi }).Deno;

const WARMUP = 20;

interface Stats {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
}
const pct = (xs: readonly number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return +(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0).toFixed(2);
};
const stats = (xs: readonly number[]): Stats => ({ n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) });

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** `exec(["true"])` → `wait()` in a fresh sandbox, interleaved with `spawnTrue` as the baseline. */
async function measure(client: SandboxClient, rounds: number, spawnTrue: () => Promise<unknown>) {
  const sb: Sandbox = await client.sandboxes.create({ app: "bench" });
  try {
    const execTrue = async () => (await sb.exec(["true"])).wait();
    for (let i = 0; i < WARMUP; i++) await execTrue();
    const baseline: number[] = [];
    const sbx: number[] = [];
    for (let i = 0; i < rounds; i++) {
      baseline.push(await timed(spawnTrue));
      sbx.push(await timed(execTrue));
    }
    return { spawnTrueMs: stats(baseline), execTrueWaitMs: stats(sbx) };
  } finally {
    await sb.terminate();
  }
}

if (Deno) {
  // In Deno: args endpoint, token, rounds; one JSON line out.
  const [endpoint, token, rounds] = Deno.args as [string, string, string];
  const { SandboxClient } = await import("@sbx/deno");
  await using client = new SandboxClient({ endpoint, token });
  const spawnTrue = () => new Deno.Command("true", { stdout: "null", stderr: "null" }).output();
  const result = await measure(client, Number(rounds), spawnTrue);
  console.log(JSON.stringify({ runtime: `deno ${Deno.version.deno}`, ...result }));
} else {
  const rounds = Number(process.env.SBX_BENCH_ROUNDS ?? 200);
  const here = dirname(fileURLToPath(import.meta.url));
  const server = await startServer(join(here, "../../cli/dist/main.js"));
  try {
    const { SandboxClient } = await import("@sbx/node");
    const node = await (async () => {
      await using client = new SandboxClient({ endpoint: server.endpoint, token: server.token });
      const spawnTrue = () =>
        new Promise((resolve, reject) => spawn("true", { stdio: "ignore" }).on("exit", resolve).on("error", reject));
      return { runtime: `node ${process.versions.node}`, ...(await measure(client, rounds, spawnTrue)) };
    })();
    const deno = JSON.parse(await runInDeno(fileURLToPath(import.meta.url), server.endpoint, server.token, rounds));
    console.log(
      JSON.stringify(
        {
          rounds,
          node,
          deno,
          denoOverNodeP50: +(deno.execTrueWaitMs.p50 / node.execTrueWaitMs.p50).toFixed(2),
        },
        null,
        2,
      ),
    );
  } finally {
    await server.close();
  }
}

async function startServer(cli: string): Promise<{ endpoint: string; token: string; close: () => Promise<void> }> {
  if (process.env.SBX_ENDPOINT) {
    return { endpoint: process.env.SBX_ENDPOINT, token: process.env.SBX_TOKEN ?? "", close: async () => {} };
  }
  const dataDir = mkdtempSync(join(tmpdir(), "sbx-bench-deno-"));
  const server = spawn(process.execPath, [cli, "server", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = "";
    server.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1] as string);
    });
    server.on("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
  const { readFileSync } = await import("node:fs");
  return {
    endpoint,
    token: readFileSync(join(dataDir, "token"), "utf8").trim(),
    close: async () => {
      const exited = new Promise((resolve) => server.once("exit", resolve));
      server.kill("SIGTERM");
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs this file in Deno with access to the server and to `true` only; its JSON line. */
function runInDeno(file: string, endpoint: string, token: string, rounds: number): Promise<string> {
  const deno = (createRequire(import.meta.url)("deno/install_api.cjs") as { runInstall(): string }).runInstall();
  const args = [
    "run",
    "--node-modules-dir=manual",
    `--allow-net=${new URL(endpoint).host}`,
    "--allow-run=true",
    file,
    endpoint,
    token,
    String(rounds),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(deno, args, {
      cwd: dirname(dirname(file)),
      env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve(out.trim().split("\n").at(-1) ?? "") : reject(new Error(`deno exited ${code}`)),
    );
  });
}
