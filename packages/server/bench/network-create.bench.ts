// Create → first output with the sandbox's network on vs blockNetwork: true (issue 18's goal:
// p50 within 1.2×), at the runtime level, rounds interleaved in the same run: through the warm
// pool (how creates are served: a warm sandbox has its link already, the policy is applied at
// handout) and cold (no pool: the link is made during the start).
// Run as root after a build: node packages/server/bench/network-create.bench.ts
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BLOCKED_NETWORK, type RuntimeNetworkSpec } from "@sbx/server-kit";
import { createLocalRuntime } from "../dist/runtime/local/index.js";
import { createToFirstByte, interleaved, p50Ratio, stats } from "./bench-support.ts";

const ROUNDS = Number(process.env.SBX_BENCH_NETWORK_ROUNDS ?? 30);
const OPEN: RuntimeNetworkSpec = { blockNetwork: false, cidrAllowlist: [], ports: [] };
const work = mkdtempSync(join(tmpdir(), "sbx-network-bench-"));
// (Nothing is reached: the ceiling keeps sandboxes inside the machine anyway.)
const network = { allow: ["198.18.0.0/15"] };
const runtimes = {
  warm: createLocalRuntime({ dataDir: join(work, "warm"), network }),
  cold: createLocalRuntime({ dataDir: join(work, "cold"), network, warmPoolSize: 0 }),
};
try {
  for (const runtime of Object.values(runtimes)) {
    const problems = await runtime.checkPrerequisites();
    if (problems.length > 0) throw new Error(problems.join("\n"));
    await runtime.cleanupLeftovers(); // (fills the warm pool)
  }
  const on = { env: {}, network: OPEN };
  const blocked = { env: {}, network: BLOCKED_NETWORK };
  for (const runtime of Object.values(runtimes)) {
    await createToFirstByte(runtime, on);
    await createToFirstByte(runtime, blocked);
  }
  const times = await interleaved(
    ROUNDS,
    {
      warmOpen: () => createToFirstByte(runtimes.warm, on),
      warmBlocked: () => createToFirstByte(runtimes.warm, blocked),
      coldOpen: () => createToFirstByte(runtimes.cold, on),
      coldBlocked: () => createToFirstByte(runtimes.cold, blocked),
    },
    ["warmOpen", "warmBlocked"],
  );
  console.log(
    JSON.stringify(
      {
        rounds: ROUNDS,
        warmPool: {
          networkOn: stats(times.warmOpen),
          blockNetwork: stats(times.warmBlocked),
          onToBlockedP50: p50Ratio(times.warmOpen, times.warmBlocked),
        },
        cold: {
          networkOn: stats(times.coldOpen),
          blockNetwork: stats(times.coldBlocked),
          onToBlockedP50: p50Ratio(times.coldOpen, times.coldBlocked),
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
