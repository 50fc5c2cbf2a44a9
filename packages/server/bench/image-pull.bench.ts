// Image pull benchmark: a ~50 MB image (Python's standard library, many small files; a few
// large binaries; some incompressible data: what images are made of) in a registry on loopback
// (Debian's docker-registry), pulled by the image store (download, digest checks, gunzip,
// unpack into the layer store) vs baselines measured in the same run, rounds interleaved:
//   1. `skopeo copy docker://… oci:DIR` (download and digest checks; no unpack): the issue's
//      baseline, goal >= 50% of its speed;
//   2. the same skopeo copy, then its layers unpacked with `pigz -dc | tar -x` (C tools, the
//      layers in parallel; gzip when pigz is missing): the least a pull that unpacks has to do;
//   3. when podman is installed (not by scripts/test-deps.sh), `podman pull` into a storage
//      root of its own (overlay driver): the same job as the store's, by the usual tool.
// Each round pulls an image of its own (the same files, and a file naming the round in each
// layer: new blobs and diff ids), so every round downloads and unpacks everything, and nothing
// is removed until the end (on a file system without a journal, ext4 scans the inodes removed
// in the last 30 s for every file it creates: removing a round's files would slow the next).
// The store is opened once, as a server does: its first pull starts the layer workers ("cold"),
// the later ones find them running ("warm").
// Stores and copies go to SBX_BENCH_PULL_DIR (default: the temp dir), so one file system.
// Run as root after a build: node packages/server/bench/image-pull.bench.ts (part of pnpm bench).
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
const load = () => Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
const installed = (tool: string) => {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};
const gunzip = installed("pigz") ? "pigz" : "gzip";
const podman = installed("podman");
/** Runs a command under GNU time; returns the CPU (user + system) it and its children used, in ms. */
async function timed(command: string, args: readonly string[]): Promise<number> {
  const { stderr } = await run("/usr/bin/time", ["-f", "cpu %U %S", command, ...args]);
  const [user, system] = (/cpu ([0-9.]+) ([0-9.]+)\s*$/.exec(stderr) ?? []).slice(1).map(Number);
  return ((user ?? 0) + (system ?? 0)) * 1000;
}
/** The CPU this process used since `since` (all its threads: the layer workers' too), in ms. */
const cpuSince = (since: NodeJS.CpuUsage) => {
  const { user, system } = process.cpuUsage(since);
  return (user + system) / 1000;
};

const work = mkdtempSync(join(process.env.SBX_BENCH_PULL_DIR ?? tmpdir(), "sbx-pull-bench-"));
const registry = await startTestRegistry("none");
try {
  const layout = join(work, "layout");
  const extra = join(work, "extra");
  mkdirSync(extra);
  const tarOf = (round: number, ...paths: string[]) => {
    writeFileSync(join(extra, "round"), `${round}\n`);
    return execFileSync("tar", ["-cf", "-", "-C", "/", ...paths, "-C", extra, "round"], {
      maxBuffer: 1 << 30,
      stdio: ["ignore", "pipe", "ignore"],
    });
  };
  const built = [];
  for (let round = 0; round < ROUNDS; round++) {
    const layers = [
      tarOf(round, "usr/lib/python3.11"),
      tarOf(round, "usr/bin/skopeo", "usr/bin/docker-registry", "usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"),
      // Already-compressed data (archives, media): 4 × 5 MB that gzip cannot shrink.
      [0, 1, 2, 3].map((i) => ({ name: `opt/data/blob-${i}.bin`, content: randomBytes(5_000_000) })),
    ];
    built.push(await writeOciImage(layout, `bench-${round}`, { layers }));
    await registry.push(layout, `bench-${round}`, "bench");
  }
  const image = built[0] as (typeof built)[number];
  const compressed = image.blobs.reduce((sum, b) => sum + b.size, 0);
  const files = Number(execFileSync("sh", ["-c", "find /usr/lib/python3.11 | wc -l"]).toString().trim()) + 9;

  const skopeo: number[] = [];
  const skopeoUntar: number[] = [];
  const store: number[] = [];
  const podmanPull: number[] = [];
  const runRoots: string[] = [];
  const cpu = { skopeo: [] as number[], skopeoUntar: [] as number[], podman: [] as number[], store: [] as number[] };
  const loads: number[] = [];
  const copy = (round: number, ociDir: string) =>
    timed("skopeo", [
      "copy",
      "--quiet",
      "--src-tls-verify=false",
      `docker://${registry.host}/bench:bench-${round}`,
      `oci:${ociDir}:bench`,
    ]);
  const imageStore = await OciImageStore.open({ dir: join(work, "store") });
  try {
    for (let round = 0; round < ROUNDS; round++) {
      let start = performance.now();
      cpu.skopeo.push(await copy(round, mkdtempSync(join(work, "oci-"))));
      skopeo.push(ms(start));

      const ociDir = mkdtempSync(join(work, "oci-"));
      const rootDir = mkdtempSync(join(work, "root-"));
      start = performance.now();
      const copyCpu = await copy(round, ociDir);
      const untarCpu = await Promise.all(
        (built[round] as (typeof built)[number]).blobs.map(async (blob, i) => {
          const dir = join(rootDir, String(i));
          mkdirSync(dir);
          const path = join(ociDir, "blobs/sha256", blob.digest.slice(7));
          return await timed("sh", ["-c", `${gunzip} -dc "$0" | tar -C "$1" -xf -`, path, dir]);
        }),
      );
      skopeoUntar.push(ms(start));
      cpu.skopeoUntar.push(untarCpu.reduce((a, b) => a + b, copyCpu));

      if (podman) {
        const root = mkdtempSync(join(work, "podman-"));
        // Its run root (locks) must have a short path: podman refuses one over 50 characters.
        const runRoot = mkdtempSync("/run/sbx-podman-");
        runRoots.push(runRoot);
        start = performance.now();
        cpu.podman.push(
          await timed("podman", [
            ...["--root", root, "--runroot", runRoot, "--storage-driver", "overlay"],
            ...["pull", "--quiet", "--tls-verify=false", `${registry.host}/bench:bench-${round}`],
          ]),
        );
        podmanPull.push(ms(start));
      }

      start = performance.now();
      const since = process.cpuUsage();
      await imageStore.pull(parseImageReference(`${registry.host}/bench:bench-${round}`));
      store.push(ms(start));
      cpu.store.push(cpuSince(since));
      loads.push(load());
    }
  } finally {
    imageStore.close();
    for (const dir of runRoots) rmSync(dir, { recursive: true, force: true });
  }
  const skopeoMs = median(skopeo);
  const skopeoUntarMs = median(skopeoUntar);
  const warm = store.slice(1);
  const storeMs = median(warm.length > 0 ? warm : store);
  console.log(
    JSON.stringify(
      {
        imagePull: {
          image: { compressedMB: +(compressed / 1e6).toFixed(1), layers: image.blobs.length, files },
          rounds: ROUNDS,
          loadAverage: loads,
          skopeoCopyToOciDir: {
            medianMs: Math.round(skopeoMs),
            MBps: +(compressed / 1e3 / skopeoMs).toFixed(1),
            runs: skopeo.map(Math.round),
          },
          skopeoCopyThenGunzipTar: {
            gunzip,
            medianMs: Math.round(skopeoUntarMs),
            runs: skopeoUntar.map(Math.round),
          },
          podmanPull: podman ? { medianMs: Math.round(median(podmanPull)), runs: podmanPull.map(Math.round) } : null,
          // CPU (user + system, all threads and children; not the registry's), per round.
          cpuMs: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v.map(Math.round)])),
          imageStorePull: {
            firstMs: Math.round(store[0] ?? 0),
            medianLaterMs: Math.round(storeMs),
            MBps: +(compressed / 1e3 / storeMs).toFixed(1),
            runs: store.map(Math.round),
          },
          speedRatioToSkopeoCopy: +(skopeoMs / storeMs).toFixed(2),
          speedRatioToSkopeoCopyAndUntar: +(skopeoUntarMs / storeMs).toFixed(2),
          firstPullSpeedRatioToSkopeoCopyAndUntar: +(skopeoUntarMs / (store[0] ?? 1)).toFixed(2),
          speedRatioToPodmanPull: podman ? +(median(podmanPull) / storeMs).toFixed(2) : null,
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
