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
import { BLOCKED_NETWORK, type ImageRecord } from "@sbx/server-kit";
import { OciImageStore } from "../dist/images/oci-image-store.js";
import { createLocalRuntime } from "../dist/runtime/local/index.js";
import { busyboxRoot, importTestImage } from "../dist/runtime/local/test-support/image-roots.js";
import { createToFirstByte, firstByte, interleaved, p50Ratio, pct, RAW_BWRAP_ECHO, stats } from "./bench-support.ts";

const ROUNDS = Number(process.env.SBX_BENCH_CREATE_ROUNDS ?? 30);
const work = mkdtempSync(join(process.env.SBX_BENCH_CREATE_DIR ?? tmpdir(), "sbx-create-bench-"));
const store = await OciImageStore.open({ dir: join(work, "store") });
const runtimes = {
  cold: createLocalRuntime({ dataDir: join(work, "cold"), layers: store, warmPoolSize: 0 }),
  warm: createLocalRuntime({ dataDir: join(work, "warm"), layers: store }),
};
try {
  for (const runtime of Object.values(runtimes)) {
    const problems = await runtime.checkPrerequisites();
    if (problems.length > 0) throw new Error(problems.join("\n"));
  }
  const image = await importTestImage(store, work, {
    layers: [busyboxRoot(), [{ name: "etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\n" }]],
  });

  const from = (image: ImageRecord | undefined) => ({ image, env: {}, network: BLOCKED_NETWORK });
  // Warm-up: images, disk templates and the agent are made by the first creates.
  for (const runtime of Object.values(runtimes)) {
    await createToFirstByte(runtime, from(undefined));
    await createToFirstByte(runtime, from(image));
  }
  await firstByte("bwrap", RAW_BWRAP_ECHO);
  const times = await interleaved(ROUNDS, {
    raw: () => firstByte("bwrap", RAW_BWRAP_ECHO),
    defaultCold: () => createToFirstByte(runtimes.cold, from(undefined)),
    imageCold: () => createToFirstByte(runtimes.cold, from(image)),
  });
  const spaced = await interleaved(
    ROUNDS,
    {
      defaultWarm: () => createToFirstByte(runtimes.warm, from(undefined)),
      imageWarm: () => createToFirstByte(runtimes.warm, from(image)),
    },
    ["defaultWarm", "imageWarm"],
  );
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
          imageToDefaultP50: p50Ratio(times.imageCold, times.defaultCold),
        },
        warmPool: {
          defaultImage: stats(spaced.defaultWarm),
          image: stats(spaced.imageWarm),
          imageToRawBwrapP50: +(pct(spaced.imageWarm, 50) / raw).toFixed(2),
          imageToDefaultP50: p50Ratio(spaced.imageWarm, spaced.defaultWarm),
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
