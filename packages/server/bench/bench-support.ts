/**
 * What the server's benchmarks share: percentiles, the raw bubblewrap baseline a sandbox start
 * is held against (`bwrap --unshare-all … echo hi` over the host's /usr, timed to its first byte
 * of output), and create → first output at the runtime level, in interleaved rounds.
 */
import { spawn } from "node:child_process";
import type { RuntimeSandboxSpec, SandboxRuntime } from "@sbx/server-kit";

/** The `p`th percentile of `xs` (nearest rank), to 0.01. */
export const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return +(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0).toFixed(2);
};

export const stats = (xs: number[]): { p50: number; p99: number } => ({ p50: pct(xs, 50), p99: pct(xs, 99) });

/** bwrap's arguments for a bare sandbox: the host's /usr read-only (and its links), /proc, /dev. */
export const BWRAP_HOST_USR = [
  "--ro-bind",
  "/usr",
  "/usr",
  "--symlink",
  "usr/lib64",
  "/lib64",
  "--symlink",
  "usr/lib",
  "/lib",
  "--symlink",
  "usr/bin",
  "/bin",
  "--proc",
  "/proc",
  "--dev",
  "/dev",
];

/** bwrap's arguments for the baseline: fresh namespaces, the host's /usr read-only, `echo hi`. */
export const RAW_BWRAP_ECHO = ["--unshare-all", ...BWRAP_HOST_USR, "/usr/bin/echo", "hi"];

/** Milliseconds from spawning `cmd` to its first byte of output. */
export function firstByte(cmd: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    child.stdout.once("data", () => resolve(performance.now() - start));
    child.on("error", reject);
  });
}

let created = 0;

/**
 * Milliseconds from asking `runtime` for a sandbox (`spec`, with an id of its own) to the first
 * stdout byte of `echo hi` in it; then the sandbox is destroyed (untimed).
 */
export async function createToFirstByte(
  runtime: SandboxRuntime,
  spec: Omit<RuntimeSandboxSpec, "id">,
): Promise<number> {
  const start = performance.now();
  const sb = await runtime.createSandbox({ ...spec, id: `bench-${++created}` });
  const p = await sb.exec({ argv: ["echo", "hi"], env: {}, pty: false });
  await new Promise<void>((resolve) => p.onStdout(() => resolve()));
  const ms = performance.now() - start;
  await p.exit;
  await sb.destroy();
  return ms;
}

/**
 * `rounds` rounds of `steps`, each round taking them in turn (so a neighbour's load falls on
 * all alike): each step's results by name. A step named in `spaced` waits 300 ms first, so a
 * warm pool keeps up (as for a user creating now and then).
 */
export async function interleaved<K extends string>(
  rounds: number,
  steps: Record<K, () => Promise<number>>,
  spaced: readonly NoInfer<K>[] = [],
): Promise<Record<K, number[]>> {
  const entries = Object.entries(steps) as [K, () => Promise<number>][];
  const times = Object.fromEntries(entries.map(([name]) => [name, [] as number[]])) as Record<K, number[]>;
  for (let i = 0; i < rounds; i++) {
    for (const [name, step] of entries) {
      if (spaced.includes(name)) await new Promise((r) => setTimeout(r, 300));
      times[name].push(await step());
    }
  }
  return times;
}

/** `a`'s p50 ÷ `b`'s, to 0.01. */
export const p50Ratio = (a: number[], b: number[]): number => +(pct(a, 50) / pct(b, 50)).toFixed(2);
