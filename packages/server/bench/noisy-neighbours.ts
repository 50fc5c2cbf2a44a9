// Noisy neighbours: how much do other sandboxes slow down a quiet one?
//
// A real server (its own process, 127.0.0.1 only) holds one "neighbour" sandbox. For each
// scenario, attacker sandboxes misbehave for SBX_NOISY_SECONDS while the bench calls, one
// after another, on the neighbour:
//   run      sb.run("echo ok")                  RPC + agent fork/exec + output + exit
//   output   the same run until "ok" arrives    (run minus this: the exit's way back)
//   start    sb.exec(["true"]) until started    RPC + the agent's fork/exec (exit not awaited)
//   stat     sb.filesystem.stat("/")            RPC + an agent call, no fork
//   ping     sb.getTags()                       RPC answered by the server alone
// and prints p50/p90/p99/max per call, the ratio of p99 to the quiet p99, and where the time
// went: the server's event-loop delay and CPU (bench/server-probe.ts), the machine's pressure
// stall (PSI, % of wall time some task waited for cpu/io/memory) and the most dirty page cache.
//
// Scenarios (each attack bounded by the sandbox's own pids/memory limits, killed at the end):
//   quiet      nothing else runs (measured first and last: the baseline)
//   bytewise   4 sandboxes writing stdout one byte per write(2)
//   yes        an unread `yes` (output nobody reads, retained by the server)
//   forkbomb   a bash fork bomb (up to the pids limit)
//   membomb    allocating past a 256 MiB memory limit, again and again
//   flood      a second client running `true` 16 at a time in another sandbox
//   spin       4 sandboxes each spinning one thread per core
//   all        every attack above at once
//   diskwrite  a sandbox rewriting a 256 MiB file on its disk layer, again and again (not
//              in "all": it measures the shared dirty-page pool and disk, not the server)
// Run as root: node packages/server/bench/noisy-neighbours.ts [scenario ...]
// Env: SBX_NOISY_SECONDS (default 15) per scenario.
import { fork, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Sandbox, SandboxClient } from "@sbx/node";

const SECONDS = Number(process.env.SBX_NOISY_SECONDS ?? 15);
const CORES = availableParallelism();

const here = dirname(fileURLToPath(import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), "sbx-noisy-"));
const serverProcess = spawn(
  process.execPath,
  [
    "--import",
    join(here, "server-probe.ts"),
    join(here, "../../cli/dist/main.js"),
    "server",
    "--listen",
    "127.0.0.1:0",
    "--data-dir",
    dataDir,
    "--token",
    "bench",
  ],
  { stdio: ["ignore", "pipe", "inherit"] },
);
let serverOut = "";
let probeWaiter: ((line: ProbeLine) => void) | undefined;
interface ProbeLine {
  loopDelayMs: { p50: number; p99: number; max: number };
  cpuPercent: number;
}
const endpoint = await new Promise<string>((resolve, reject) => {
  serverProcess.stdout.setEncoding("utf8").on("data", (text: string) => {
    serverOut += text;
    const listening = /listening on (\S+)/.exec(serverOut);
    if (listening) resolve(listening[1] as string);
    let newline = serverOut.indexOf("\n");
    while (newline !== -1) {
      const line = serverOut.slice(0, newline);
      serverOut = serverOut.slice(newline + 1);
      if (line.startsWith("sbx-probe ")) probeWaiter?.(JSON.parse(line.slice("sbx-probe ".length)));
      newline = serverOut.indexOf("\n");
    }
  });
  serverProcess.on("exit", (code) => reject(new Error(`server exited ${code}`)));
});
const probe = () =>
  new Promise<ProbeLine>((resolve) => {
    probeWaiter = resolve;
    serverProcess.kill("SIGUSR2");
  });

const client = new SandboxClient({ endpoint, token: "bench" });

// The attacks run in another process (another tenant's client): see noisy-attacker.ts.
const ATTACKS = ["bytewise", "yes", "forkbomb", "membomb", "flood", "spin", "diskwrite"];
const attacker = fork(join(here, "noisy-attacker.ts"), [endpoint, "bench"], { stdio: "inherit" });
const ask = (message: object, answer: string) =>
  new Promise<void>((resolve, reject) => {
    const onMessage = (reply: Record<string, unknown>) => {
      if (!(answer in reply)) return;
      attacker.off("message", onMessage);
      attacker.off("exit", onExit);
      resolve();
    };
    const onExit = (code: number | null) => reject(new Error(`the attacker exited (${code})`));
    attacker.on("message", onMessage);
    attacker.once("exit", onExit);
    attacker.send(message);
  });

const pressure = () => {
  const some = (kind: string) =>
    Number(/some .*total=(\d+)/.exec(readFileSync(`/proc/pressure/${kind}`, "utf8"))?.[1] ?? 0);
  return { cpu: some("cpu"), io: some("io"), memory: some("memory") };
};
const dirtyMiB = () => {
  const info = readFileSync("/proc/meminfo", "utf8");
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(info)?.[1] ?? 0);
  return Math.round((kib("Dirty") + kib("Writeback")) / 1024);
};

const timed = async (call: () => Promise<unknown>, into: number[]) => {
  const start = performance.now();
  await call();
  into.push(performance.now() - start);
};

interface Result {
  scenario: string;
  calls: Record<string, number[]>;
  server: ProbeLine;
  stallPercent: { cpu: number; io: number; memory: number };
  dirtyMiBMax: number;
}

async function scenario(name: string, neighbour: Sandbox): Promise<Result> {
  const attacking = name !== "quiet";
  if (attacking) await ask({ start: selectAttacks(name) }, "started");
  await probe(); // start the server's counters with the attack under way
  const before = pressure();
  const wallStart = performance.now();
  let dirtyMax = dirtyMiB();
  const sampler = setInterval(() => {
    dirtyMax = Math.max(dirtyMax, dirtyMiB());
  }, 500);
  const calls: Record<string, number[]> = { run: [], output: [], start: [], stat: [], ping: [] };
  const deadline = performance.now() + SECONDS * 1000;
  // The attacks stop at the deadline even if a call on the neighbour is stuck.
  const stopped = new Promise<void>((resolve) => setTimeout(resolve, SECONDS * 1000)).then(async () => {
    if (attacking) await ask({ stop: true }, "stopped");
  });
  while (performance.now() < deadline) {
    const runStart = performance.now();
    await timed(
      () => neighbour.run("echo ok", { onStdout: () => calls.output?.push(performance.now() - runStart) }),
      calls.run as number[],
    );
    let started: Awaited<ReturnType<Sandbox["exec"]>> | undefined;
    await timed(async () => {
      started = await neighbour.exec(["true"]);
    }, calls.start as number[]);
    await started?.wait();
    await timed(() => neighbour.filesystem.stat("/"), calls.stat as number[]);
    await timed(() => neighbour.getTags(), calls.ping as number[]);
  }
  const server = await probe();
  const wallMs = performance.now() - wallStart;
  const after = pressure();
  clearInterval(sampler);
  await stopped;
  const percent = (kind: keyof typeof before) => Math.round(((after[kind] - before[kind]) / 1000 / wallMs) * 100);
  // Let the killed attackers' cgroups and dirty pages settle before the next scenario.
  await new Promise((r) => setTimeout(r, 3000));
  return {
    scenario: name,
    calls,
    server,
    stallPercent: { cpu: percent("cpu"), io: percent("io"), memory: percent("memory") },
    dirtyMiBMax: dirtyMax,
  };
}

function selectAttacks(name: string): string[] {
  if (name === "all") return ATTACKS.filter((n) => n !== "diskwrite");
  if (!ATTACKS.includes(name)) throw new Error(`unknown scenario ${name}`);
  return [name];
}

const pct = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
};
const fmt = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1));

function printTable(results: Result[]): void {
  const quiet = results.find((r) => r.scenario === "quiet");
  const header = [
    "scenario",
    "call",
    "n",
    "p50",
    "p90",
    "p99",
    "max",
    "p99/quiet",
    "loop p99",
    "loop max",
    "srv cpu%",
    "stall cpu/io/mem %",
    "dirty MiB",
  ];
  const rows: string[][] = [header];
  for (const r of results) {
    for (const [call, xs] of Object.entries(r.calls)) {
      const quietP99 = quiet ? pct(quiet.calls[call] ?? [], 99) : 0;
      rows.push([
        r.scenario,
        call,
        String(xs.length),
        fmt(pct(xs, 50)),
        fmt(pct(xs, 90)),
        fmt(pct(xs, 99)),
        fmt(Math.max(...xs)),
        quietP99 ? (pct(xs, 99) / quietP99).toFixed(1) : "-",
        call === "run" ? fmt(r.server.loopDelayMs.p99) : "",
        call === "run" ? fmt(r.server.loopDelayMs.max) : "",
        call === "run" ? String(r.server.cpuPercent) : "",
        call === "run" ? `${r.stallPercent.cpu}/${r.stallPercent.io}/${r.stallPercent.memory}` : "",
        call === "run" ? String(r.dirtyMiBMax) : "",
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...rows.map((row) => (row[i] as string).length)));
  for (const row of rows) console.log(row.map((cell, i) => cell.padStart(widths[i] as number)).join("  "));
}

const requested = process.argv.slice(2);
const names = requested.length > 0 ? requested : [...ATTACKS.filter((n) => n !== "diskwrite"), "all", "diskwrite"];
const results: Result[] = [];
try {
  const neighbour = await client.sandboxes.create({ app: "neighbour" });
  await neighbour.run("true"); // warm-up
  results.push(await scenario("quiet", neighbour));
  for (const name of names) {
    if (name === "quiet") continue;
    results.push(await scenario(name, neighbour));
    console.error(`done: ${name}`);
  }
  results.push({ ...(await scenario("quiet", neighbour)), scenario: "quiet-end" });
  await neighbour.terminate();
} finally {
  attacker.disconnect();
  await client.close();
  serverProcess.kill("SIGTERM");
  await new Promise((r) => serverProcess.once("exit", r));
  rmSync(dataDir, { recursive: true, force: true });
}
console.log(`noisy neighbours: ${SECONDS} s per scenario, ${CORES} cores; milliseconds`);
printTable(results);
