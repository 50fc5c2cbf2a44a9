// Idle sandboxes held at once (issue 17): host memory per idle sandbox, and where it goes,
// against a baseline measured in the same run: N bare `bwrap --unshare-all --as-pid-1 … sleep`
// processes (fresh user, pid, mount, net, ipc, uts and cgroup namespaces, the host's /usr
// read-only, /proc, /dev; the outer bwrap and its pid 1, as a sandbox has bwrap and its agent).
//
// A real server (`sbx server`, its own data dir, 127.0.0.1) is started; a client creates
// N sandboxes (SBX_BENCH_IDLE_COUNT, default 1000) SBX_BENCH_IDLE_CONCURRENCY at a time
// (default 8), from the default image, or from a cached busybox image imported into the
// server's store first (SBX_BENCH_IDLE_IMAGE=1). Once the server and its sandboxes are quiet,
// what N of them cost is read (nothing dropped from the caches before or after):
//   - the machine: MemTotal − MemAvailable from /proc/meminfo, before and after, and its fall
//     once they are gone again (two readings of one cost: other work on the machine moves each);
//   - the kernel: Slab (SUnreclaim), PageTables, KernelStack, Shmem, and Cached, from the same;
//   - the server process: RSS and PSS (/proc/<pid>/smaps_rollup), before and after;
//   - the sandboxes' host processes (bwrap, the agent, anything else under the server), PSS
//     summed from smaps_rollup, with their threads;
//   - the sandboxes' cgroups (memory.usage_in_bytes, kmem on cgroup v1), and their disks
//     (blocks their disk images hold on the host) and tmpfs.
// The machine is shared: other work moves MemAvailable too, so the breakdown says what is sbx's.
// Run as root after a build: node packages/server/bench/idle-sandboxes.bench.ts. Prints a table
// and JSON.
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { type Sandbox, SandboxClient } from "@sbx/node";
import { startSbxServer } from "@sbx/test-fixtures/sbx-server";
import { busyboxLayer, writeOciImage } from "../dist/images/test-support/oci-layout.js";
import { BWRAP_HOST_USR } from "./bench-support.ts";

const COUNT = Number(process.env.SBX_BENCH_IDLE_COUNT ?? 1000);
const CONCURRENCY = Number(process.env.SBX_BENCH_IDLE_CONCURRENCY ?? 8);
/** Seconds to hold the sandboxes after measuring, to look at them (0: none). */
const HOLD_S = Number(process.env.SBX_BENCH_IDLE_HOLD_S ?? 0);
const WITH_IMAGE = process.env.SBX_BENCH_IDLE_IMAGE === "1";
const MiB = 2 ** 20;
const mib = (bytes: number) => +(bytes / MiB).toFixed(2);

const meminfo = (): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const line of readFileSync("/proc/meminfo", "utf8").split("\n")) {
    const m = /^([\w()]+):\s+(\d+)/.exec(line);
    if (m) out[m[1] as string] = Number(m[2]) * 1024;
  }
  out.Used = (out.MemTotal ?? 0) - (out.MemAvailable ?? 0);
  return out;
};
const MEMINFO_KEYS = [
  "Used",
  "MemFree",
  "AnonPages",
  "SUnreclaim",
  "SReclaimable",
  "PageTables",
  "KernelStack",
  "Shmem",
  "Cached",
  "Buffers",
  "Active(file)",
  "Inactive(file)",
  "Unevictable",
  "Dirty",
  "Percpu",
] as const;

/** RSS and PSS of a process, bytes (0 when it is gone). */
function rollup(pid: number): { rss: number; pss: number } {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? 0) * 1024;
    return { rss: field("Rss"), pss: field("Pss") };
  } catch {
    return { rss: 0, pss: 0 };
  }
}

/** Every process's parent, command name and thread count. */
function processTable(): Map<number, { ppid: number; comm: string; threads: number }> {
  const table = new Map<number, { ppid: number; comm: string; threads: number }>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const fields = stat.slice(close + 2).split(" ");
      table.set(Number(name), { ppid: Number(fields[1]), comm, threads: Number(fields[17]) });
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/** PSS, RSS, count and threads of the descendants of `root`, by command name. */
function descendants(root: number): Map<string, { count: number; pss: number; rss: number; threads: number }> {
  const table = processTable();
  const children = new Map<number, number[]>();
  for (const [pid, { ppid }] of table) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  const byComm = new Map<string, { count: number; pss: number; rss: number; threads: number }>();
  const todo = [...(children.get(root) ?? [])];
  while (todo.length > 0) {
    const pid = todo.pop() as number;
    todo.push(...(children.get(pid) ?? []));
    const info = table.get(pid);
    if (!info) continue;
    const entry = byComm.get(info.comm) ?? { count: 0, pss: 0, rss: 0, threads: 0 };
    const { rss, pss } = rollup(pid);
    entry.count++;
    entry.pss += pss;
    entry.rss += rss;
    entry.threads += info.threads;
    byComm.set(info.comm, entry);
  }
  return byComm;
}

const cpuTicks = (pid: number): number => {
  let total = 0;
  const table = processTable();
  const pids = [pid];
  for (const [p, { ppid }] of table) if (ppid === pid) pids.push(p);
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
  }
  return total;
};

/** Waits until `pid` (and its children) used under 2% of a core for 2 s running, at most `maxS`. */
async function quiet(pid: number, maxS = 60): Promise<void> {
  const until = performance.now() + maxS * 1000;
  let calm = 0;
  let last = cpuTicks(pid);
  while (performance.now() < until && calm < 2) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = cpuTicks(pid);
    calm = now - last <= 2 ? calm + 1 : 0; // ticks are 10 ms
    last = now;
  }
}

/** Sum of a file's number over the sandboxes' cgroups (named `<prefix>-<id>`: sbx's own dirs). */
function cgroupSum(file: string, names: Set<string>): number {
  let total = 0;
  for (const base of ["/sys/fs/cgroup/memory/sbx", "/sys/fs/cgroup/sbx"]) {
    let entries: string[];
    try {
      entries = readdirSync(base);
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (![...names].some((id) => entry.endsWith(`-${id}`))) continue;
      try {
        total += Number(readFileSync(join(base, entry, file), "utf8").trim());
      } catch {
        // not this version's file
      }
    }
    if (total > 0) break;
  }
  return total;
}

/** Bytes the files under `dir` hold on disk (allocated blocks), not crossing into mounts. */
function allocated(dir: string): number {
  let total = 0;
  const dev = statSync(dir).dev;
  const walk = (path: string) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      const st = statSync(full, { throwIfNoEntry: false });
      if (!st || st.dev !== dev) continue;
      total += st.blocks * 512;
      if (entry.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return total;
}

/** Runs `tasks` with at most `limit` at once. */
async function bounded<T>(count: number, limit: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, count) }, async () => {
      while (next < count) {
        const i = next++;
        results[i] = await task(i);
      }
    }),
  );
  return results;
}

const selfRss = () => rollup(process.pid).rss;

// ---- baseline: N bare bwrap sandboxes, each an outer bwrap and `sleep` as pid 1 ----
async function baseline(): Promise<Record<string, number>> {
  const before = meminfo();
  const selfBefore = selfRss();
  const args = [
    "--unshare-all",
    "--die-with-parent",
    "--as-pid-1",
    ...BWRAP_HOST_USR,
    "--tmpfs",
    "/tmp",
    "/usr/bin/sleep",
    "infinity",
  ];
  const children: ChildProcess[] = [];
  await bounded(COUNT, CONCURRENCY, async () => {
    const child = spawn("bwrap", args, { stdio: ["ignore", "ignore", "inherit"] });
    children.push(child);
    await new Promise((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
  });
  // Until every pid 1 runs `sleep` (bwrap's own set-up is done).
  for (;;) {
    const sleeping = [...descendants(process.pid).entries()].find(([comm]) => comm === "sleep")?.[1].count ?? 0;
    if (sleeping >= COUNT) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  await quiet(process.pid, 10);
  const after = meminfo();
  const procs = descendants(process.pid);
  const out: Record<string, number> = { benchRss: selfRss() - selfBefore };
  for (const key of MEMINFO_KEYS) out[key] = (after[key] ?? 0) - (before[key] ?? 0);
  for (const [comm, e] of procs) {
    out[`pss:${comm}`] = e.pss;
    out[`threads:${comm}`] = e.threads;
  }
  await Promise.all(
    children.map(
      (c) =>
        new Promise((resolve) => {
          c.once("exit", resolve);
          c.kill("SIGKILL");
        }),
    ),
  );
  await quiet(process.pid, 10);
  out.released = after.Used - meminfo().Used;
  return out;
}

// ---- sbx: a real server holding N idle sandboxes ----
async function sbx(): Promise<Record<string, number>> {
  const server = await startSbxServer({ parentDir: process.env.SBX_BENCH_IDLE_DIR, prefix: "sbx-idle-bench-" });
  const { dataDir } = server;
  const client = new SandboxClient({ endpoint: server.endpoint, token: server.token });
  const pid = server.child.pid as number;
  try {
    let image: string | undefined;
    if (WITH_IMAGE) {
      const layout = join(dataDir, "bench-layout");
      await writeOciImage(layout, "bench", {
        layers: [busyboxLayer()],
      });
      image = (await client.images.import(layout)).id;
    }
    // Warm-up: the default image, the disk template and the warm pool are made by the first create.
    await (await client.sandboxes.create({ app: "bench-idle-warmup", image })).terminate();
    await quiet(pid);
    const before = meminfo();
    const serverBefore = rollup(pid);
    const procsBefore = descendants(pid);
    const selfBefore = selfRss();
    const sandboxesDir = join(dataDir, "runtime", "sandboxes");
    const diskBefore = allocated(sandboxesDir);
    const start = performance.now();
    const sandboxes: Sandbox[] = await bounded(COUNT, CONCURRENCY, () =>
      client.sandboxes.create({ app: "bench-idle", image }),
    );
    const createSeconds = (performance.now() - start) / 1000;
    await quiet(pid);
    const after = meminfo();
    const serverAfter = rollup(pid);
    const procs = descendants(pid);
    const ids = new Set(sandboxes.map((s) => s.id));
    const out: Record<string, number> = {
      createSeconds,
      benchRss: selfRss() - selfBefore,
      serverRss: serverAfter.rss - serverBefore.rss,
      serverPss: serverAfter.pss - serverBefore.pss,
      cgroupMemory: cgroupSum("memory.usage_in_bytes", ids) || cgroupSum("memory.current", ids),
      cgroupKmem: cgroupSum("memory.kmem.usage_in_bytes", ids),
      disk: allocated(sandboxesDir) - diskBefore,
    };
    for (const key of MEMINFO_KEYS) out[key] = (after[key] ?? 0) - (before[key] ?? 0);
    for (const [comm, e] of procs) {
      const was = procsBefore.get(comm) ?? { count: 0, pss: 0, rss: 0, threads: 0 };
      out[`count:${comm}`] = e.count - was.count;
      out[`pss:${comm}`] = e.pss - was.pss;
      out[`threads:${comm}`] = e.threads - was.threads;
    }
    if (HOLD_S > 0) {
      console.error(`holding ${COUNT} idle sandboxes for ${HOLD_S} s: server pid ${pid}`);
      await new Promise((r) => setTimeout(r, HOLD_S * 1000));
    }
    const destroyStart = performance.now();
    await bounded(sandboxes.length, CONCURRENCY, (i) => (sandboxes[i] as Sandbox).terminate());
    out.terminateSeconds = (performance.now() - destroyStart) / 1000;
    await quiet(pid);
    out.released = after.Used - meminfo().Used;
    return out;
  } finally {
    await client.close();
    await server.close();
  }
}

const base = await baseline();
const sb = await sbx();
const lru = (r: Record<string, number>) => (r["Active(file)"] ?? 0) + (r["Inactive(file)"] ?? 0);
const per = (bytes: number | undefined) => mib((bytes ?? 0) / COUNT);
const rows: [string, string, string][] = [];
const row = (what: string, b: number | undefined, s: number | undefined) =>
  rows.push([what, b === undefined ? "—" : String(per(b)), s === undefined ? "—" : String(per(s))]);
row("host used memory (MemTotal − MemAvailable), rise as they start", base.Used, sb.Used);
row("host used memory, fall once they are gone (the same cost, read the other way)", base.released, sb.released);
row("  kernel: Slab unreclaimable", base.SUnreclaim, sb.SUnreclaim);
row("  kernel: Slab reclaimable", base.SReclaimable, sb.SReclaimable);
row("  kernel: PageTables", base.PageTables, sb.PageTables);
row("  kernel: KernelStack", base.KernelStack, sb.KernelStack);
row("  Shmem (tmpfs, shared memory)", base.Shmem, sb.Shmem);
row("  anonymous memory (AnonPages)", base.AnonPages, sb.AnonPages);
row("  page cache (Cached)", base.Cached, sb.Cached);
row("  block device buffers (Buffers)", base.Buffers, sb.Buffers);
row("  file pages on the LRU (Active + Inactive(file))", lru(base), lru(sb));
row("  Unevictable", base.Unevictable, sb.Unevictable);
row("  server process RSS", undefined, sb.serverRss);
row("  server process PSS", undefined, sb.serverPss);
for (const key of new Set([...Object.keys(base), ...Object.keys(sb)].filter((k) => k.startsWith("pss:")))) {
  row(`  PSS of host processes: ${key.slice(4)}`, base[key], sb[key]);
}
row("  the bench process itself (RSS)", base.benchRss, sb.benchRss);
// What is sbx's beyond doubt, read from counters other work moves less: the processes' PSS
// and the server's, and the kernel's memory that is never reclaimed while they live.
const attributed = (r: Record<string, number>) =>
  Object.entries(r)
    .filter(([k]) => k.startsWith("pss:"))
    .reduce((sum, [, v]) => sum + v, 0) +
  (r.serverPss ?? 0) +
  (r.SUnreclaim ?? 0) +
  (r.PageTables ?? 0) +
  (r.KernelStack ?? 0) +
  (r.Percpu ?? 0);
row("  kernel: Percpu", base.Percpu, sb.Percpu);
row(
  "attributed: processes' PSS + server PSS + Slab unreclaimable + PageTables + KernelStack + Percpu",
  attributed(base),
  attributed(sb),
);
row("sandboxes' cgroups: memory usage", undefined, sb.cgroupMemory);
row("sandboxes' cgroups: kernel memory (v1 kmem)", undefined, sb.cgroupKmem);
row("sandboxes' disk images on the host (allocated)", undefined, sb.disk);
const threads = Object.entries(sb)
  .filter(([k]) => k.startsWith("threads:"))
  .map(([k, v]) => `${k.slice(8)} ${(v / COUNT).toFixed(1)}`)
  .join(", ");
console.log(`\n${COUNT} idle sandboxes (${WITH_IMAGE ? "a cached busybox image" : "the default image"}), MiB each\n`);
console.log("| what | bare bwrap + sleep | sbx |\n| --- | --- | --- |");
for (const [what, b, s] of rows) console.log(`| ${what} | ${b} | ${s} |`);
console.log(
  `\nratio sbx ÷ bare bwrap: host used memory ${((sb.Used ?? 0) / (base.Used ?? 1)).toFixed(2)}, attributed ${(attributed(sb) / attributed(base)).toFixed(2)}; ` +
    `threads per sandbox: ${threads}; created in ${sb.createSeconds?.toFixed(1)} s, terminated in ${sb.terminateSeconds?.toFixed(1)} s`,
);
console.log(JSON.stringify({ count: COUNT, image: WITH_IMAGE, baseline: base, sbx: sb }));
