// Image pull benchmark: a ~50 MB image (Python's standard library, many small files; a few
// large binaries; some incompressible data: what images are made of) in a registry on loopback (Debian's
// docker-registry), pulled by the image store (download, digest checks, gunzip, unpack into
// the layer store) vs two baselines measured in the same run, rounds interleaved:
//   1. `skopeo copy docker://… oci:DIR` (download and digest checks; no unpack): the issue's
//      baseline, goal >= 50% of its speed;
//   2. the same skopeo copy, then its layers unpacked with `gzip -dc | tar -x` (C tools, the
//      layers in parallel): the least a pull that unpacks has to do.
// Stores and copies go to SBX_BENCH_PULL_DIR (default: the temp dir), so one file system.
// Run as root after a build: node packages/server/bench/image-pull.bench.ts (part of pnpm bench).
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseImageReference } from "@sbx/proto";
import { OciImageStore } from "../dist/images/oci-image-store.js";
import { writeOciImage } from "../dist/images/test-support/oci-layout.js";
import { startTestRegistry } from "../dist/images/test-support/registry.js";

const ROUNDS = Number(process.env.SBX_BENCH_PULL_ROUNDS ?? 5);
const run = promisify(execFile);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const ms = (start: number) => performance.now() - start;

const work = mkdtempSync(join(process.env.SBX_BENCH_PULL_DIR ?? tmpdir(), "sbx-pull-bench-"));
const registry = await startTestRegistry("none");
try {
  const layout = join(work, "layout");
  const tarOf = (...paths: string[]) =>
    execFileSync("tar", ["-C", "/", "-cf", "-", ...paths], { maxBuffer: 1 << 30, stdio: ["ignore", "pipe", "ignore"] });
  const layers = [
    tarOf("usr/lib/python3.11"),
    tarOf("usr/bin/skopeo", "usr/bin/docker-registry", "usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"),
    // Already-compressed data (archives, media): 4 × 5 MB that gzip cannot shrink.
    [0, 1, 2, 3].map((i) => ({ name: `opt/data/blob-${i}.bin`, content: randomBytes(5_000_000) })),
  ];
  const image = await writeOciImage(layout, "bench", { layers });
  await registry.push(layout, "bench", "bench");
  const compressed = image.blobs.reduce((sum, b) => sum + b.size, 0);
  const files = Number(execFileSync("sh", ["-c", "find /usr/lib/python3.11 | wc -l"]).toString().trim()) + 7;

  const skopeo: number[] = [];
  const skopeoUntar: number[] = [];
  const store: number[] = [];
  const copy = (ociDir: string) =>
    run("skopeo", [
      "copy",
      "--quiet",
      "--src-tls-verify=false",
      `docker://${registry.host}/bench:bench`,
      `oci:${ociDir}:bench`,
    ]);
  for (let round = 0; round < ROUNDS; round++) {
    let ociDir = mkdtempSync(join(work, "oci-"));
    let start = performance.now();
    await copy(ociDir);
    skopeo.push(ms(start));
    rmSync(ociDir, { recursive: true, force: true });

    ociDir = mkdtempSync(join(work, "oci-"));
    const rootDir = mkdtempSync(join(work, "root-"));
    start = performance.now();
    await copy(ociDir);
    await Promise.all(
      image.blobs.map(async (blob, i) => {
        const dir = join(rootDir, String(i));
        mkdirSync(dir);
        const path = join(ociDir, "blobs/sha256", blob.digest.slice(7));
        await run("sh", ["-c", 'gzip -dc "$0" | tar -C "$1" -xf -', path, dir]);
      }),
    );
    skopeoUntar.push(ms(start));
    rmSync(ociDir, { recursive: true, force: true });
    rmSync(rootDir, { recursive: true, force: true });

    const storeDir = mkdtempSync(join(work, "store-"));
    const images = await OciImageStore.open({ dir: storeDir });
    start = performance.now();
    await images.pull(parseImageReference(`${registry.host}/bench:bench`));
    store.push(ms(start));
    images.close();
    rmSync(storeDir, { recursive: true, force: true });
  }
  const skopeoMs = median(skopeo);
  const skopeoUntarMs = median(skopeoUntar);
  const storeMs = median(store);
  console.log(
    JSON.stringify(
      {
        imagePull: {
          image: { compressedMB: +(compressed / 1e6).toFixed(1), layers: layers.length, files },
          skopeoCopyToOciDir: {
            medianMs: Math.round(skopeoMs),
            MBps: +(compressed / 1e3 / skopeoMs).toFixed(1),
            runs: skopeo.map(Math.round),
          },
          skopeoCopyThenGunzipTar: { medianMs: Math.round(skopeoUntarMs), runs: skopeoUntar.map(Math.round) },
          imageStorePull: {
            medianMs: Math.round(storeMs),
            MBps: +(compressed / 1e3 / storeMs).toFixed(1),
            runs: store.map(Math.round),
          },
          speedRatioToSkopeoCopy: +(skopeoMs / storeMs).toFixed(2),
          speedRatioToSkopeoCopyAndUntar: +(skopeoUntarMs / storeMs).toFixed(2),
          goal: "speedRatioToSkopeoCopy >= 0.5",
        },
      },
      null,
      2,
    ),
  );
} finally {
  await registry.close();
  rmSync(work, { recursive: true, force: true });
}
