// Create → first output from a cached image (issue 17), at the runtime level (the local
// runtime and a real image store, no RPC: the server does not wire the store in yet), rounds
// interleaved, against two baselines measured in the same run:
//   1. a raw `bwrap --unshare-all … echo hi` spawn (the baseline: goal p50 ≤ 2×);
//   2. the same create → `echo hi` → first byte from the default image (goal: images within 1.2×).
// Both cold (no warm pool: a sandbox made from nothing each time) and through the warm pool.
// The image is busybox-only, its two layers in the store already (what "cached" means).
// Run as root after a build: node packages/server/bench/image-create.bench.ts (part of pnpm bench).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BLOCKED_NETWORK, type ImageRecord, type RuntimeSandboxSpec } from "@sbx/server-kit";
import { OciImageStore } from "../dist/images/oci-image-store.js";
import { createLocalRuntime } from "../dist/runtime/local/index.js";
import { busyboxRoot, importTestImage } from "../dist/runtime/local/test-support/image-roots.js";
import { firstByte, pct, RAW_BWRAP_ECHO, stats } from "./bench-support.ts";

const ROUNDS = Number(process.env.SBX_BENCH_CREATE_ROUNDS ?? 30);
const work = mkdtempSync(join(process.env.SBX_BENCH_CREATE_DIR ?? tmpdir(), "sbx-create-bench-"));
const store = await OciImageStore.open({ dir: join(work, "store") });
const runtimes = {
  cold: createLocalRuntime({ dataDir: join(work, "cold"), layers: store, warmPoolSize: 0 }),
  warm: createLocalRuntime({ dataDir: join(work, "warm"), layers: store }),
};
let count = 0;
try {
  for (const runtime of Object.values(runtimes)) {
    const problems = await runtime.checkPrerequisites();
    if (problems.length > 0) throw new Error(problems.join("\n"));
  }
  const image = await importTestImage(store, work, {
    layers: [busyboxRoot(), [{ name: "etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\n" }]],
  });

  /** create → exec echo → its first stdout byte; then the sandbox is destroyed (untimed). */
  const createToFirstByte = async (runtime: (typeof runtimes)["cold"], from: ImageRecord | undefined) => {
    const spec: RuntimeSandboxSpec = { id: `bench-${++count}`, image: from, env: {}, network: BLOCKED_NETWORK };
    const start = performance.now();
    const sb = await runtime.createSandbox(spec);
    const p = await sb.exec({ argv: ["echo", "hi"], env: {}, pty: false });
    await new Promise<void>((resolve) => p.onStdout(() => resolve()));
    const ms = performance.now() - start;
    await p.exit;
    await sb.destroy();
    return ms;
  };

  // Warm-up: images, disk templates and the agent are made by the first creates.
  for (const runtime of Object.values(runtimes)) {
    await createToFirstByte(runtime, undefined);
    await createToFirstByte(runtime, image);
  }
  await firstByte("bwrap", RAW_BWRAP_ECHO);
  const times = { raw: [] as number[], defaultCold: [] as number[], imageCold: [] as number[] };
  const spaced = { defaultWarm: [] as number[], imageWarm: [] as number[] };
  for (let i = 0; i < ROUNDS; i++) {
    times.raw.push(await firstByte("bwrap", RAW_BWRAP_ECHO));
    times.defaultCold.push(await createToFirstByte(runtimes.cold, undefined));
    times.imageCold.push(await createToFirstByte(runtimes.cold, image));
  }
  for (let i = 0; i < ROUNDS; i++) {
    // Spaced, so the pools keep up (as for a user creating now and then).
    await new Promise((r) => setTimeout(r, 300));
    spaced.defaultWarm.push(await createToFirstByte(runtimes.warm, undefined));
    await new Promise((r) => setTimeout(r, 300));
    spaced.imageWarm.push(await createToFirstByte(runtimes.warm, image));
  }
  const raw = pct(times.raw, 50);
  console.log(
    JSON.stringify(
      {
        rounds: ROUNDS,
        rawBwrapEcho: stats(times.raw),
        cold: {
          defaultImage: stats(times.defaultCold),
          image: stats(times.imageCold),
          imageToRawBwrapP50: +(pct(times.imageCold, 50) / raw).toFixed(2),
          imageToDefaultP50: +(pct(times.imageCold, 50) / pct(times.defaultCold, 50)).toFixed(2),
        },
        warmPool: {
          defaultImage: stats(spaced.defaultWarm),
          image: stats(spaced.imageWarm),
          imageToRawBwrapP50: +(pct(spaced.imageWarm, 50) / raw).toFixed(2),
          imageToDefaultP50: +(pct(spaced.imageWarm, 50) / pct(spaced.defaultWarm, 50)).toFixed(2),
        },
      },
      null,
      2,
    ),
  );
} finally {
  await Promise.all(Object.values(runtimes).map((r) => r.close()));
  store.close();
  rmSync(work, { recursive: true, force: true });
}
