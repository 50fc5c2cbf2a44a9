// Create → first output with the sandbox's network on vs blockNetwork: true (issue 18's goal:
// p50 within 1.2×), at the runtime level, rounds interleaved in the same run: through the warm
// pool (how creates are served: a warm sandbox has its link already, the policy is applied at
// handout) and cold (no pool: the link is made during the start).
// Run as root after a build: node packages/server/bench/network-create.bench.ts
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BLOCKED_NETWORK, type RuntimeNetworkSpec, type SandboxRuntime } from "@sbx/server-kit";
import { createLocalRuntime } from "../dist/runtime/local/index.js";
import { pct, stats } from "./bench-support.ts";

const ROUNDS = Number(process.env.SBX_BENCH_NETWORK_ROUNDS ?? 30);
const OPEN: RuntimeNetworkSpec = { blockNetwork: false, cidrAllowlist: [], ports: [] };
const work = mkdtempSync(join(tmpdir(), "sbx-network-bench-"));
// (Nothing is reached: the ceiling keeps sandboxes inside the machine anyway.)
const network = { allow: ["198.18.0.0/15"] };
const runtimes = {
  warm: createLocalRuntime({ dataDir: join(work, "warm"), network }),
  cold: createLocalRuntime({ dataDir: join(work, "cold"), network, warmPoolSize: 0 }),
};
let count = 0;
try {
  for (const runtime of Object.values(runtimes)) {
    const problems = await runtime.checkPrerequisites();
    if (problems.length > 0) throw new Error(problems.join("\n"));
    await runtime.cleanupLeftovers(); // (fills the warm pool)
  }
  const createToFirstByte = async (runtime: SandboxRuntime, net: RuntimeNetworkSpec) => {
    const start = performance.now();
    const sb = await runtime.createSandbox({ id: `bench-${++count}`, env: {}, network: net });
    const p = await sb.exec({ argv: ["echo", "hi"], env: {}, pty: false });
    await new Promise<void>((resolve) => p.onStdout(() => resolve()));
    const ms = performance.now() - start;
    await p.exit;
    await sb.destroy();
    return ms;
  };
  for (const runtime of Object.values(runtimes)) {
    await createToFirstByte(runtime, OPEN);
    await createToFirstByte(runtime, BLOCKED_NETWORK);
  }
  const times = {
    warmOpen: [] as number[],
    warmBlocked: [] as number[],
    coldOpen: [] as number[],
    coldBlocked: [] as number[],
  };
  for (let i = 0; i < ROUNDS; i++) {
    // Spaced, so the pool keeps up (as for a user creating now and then).
    await new Promise((r) => setTimeout(r, 300));
    times.warmOpen.push(await createToFirstByte(runtimes.warm, OPEN));
    await new Promise((r) => setTimeout(r, 300));
    times.warmBlocked.push(await createToFirstByte(runtimes.warm, BLOCKED_NETWORK));
    times.coldOpen.push(await createToFirstByte(runtimes.cold, OPEN));
    times.coldBlocked.push(await createToFirstByte(runtimes.cold, BLOCKED_NETWORK));
  }
  const ratio = (a: number[], b: number[]) => +(pct(a, 50) / pct(b, 50)).toFixed(2);
  console.log(
    JSON.stringify(
      {
        rounds: ROUNDS,
        warmPool: {
          networkOn: stats(times.warmOpen),
          blockNetwork: stats(times.warmBlocked),
          onToBlockedP50: ratio(times.warmOpen, times.warmBlocked),
        },
        cold: {
          networkOn: stats(times.coldOpen),
          blockNetwork: stats(times.coldBlocked),
          onToBlockedP50: ratio(times.coldOpen, times.coldBlocked),
        },
      },
      null,
      2,
    ),
  );
} finally {
  await Promise.all(Object.values(runtimes).map((r) => r.close()));
  rmSync(work, { recursive: true, force: true });
}
