/**
 * What the server's benchmarks share: percentiles, and the raw bubblewrap baseline a sandbox
 * start is held against (`bwrap --unshare-all … echo hi` over the host's /usr, timed to its
 * first byte of output).
 */
import { spawn } from "node:child_process";

/** The `p`th percentile of `xs` (nearest rank), to 0.01. */
export const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return +(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0).toFixed(2);
};

export const stats = (xs: number[]): { p50: number; p99: number } => ({ p50: pct(xs, 50), p99: pct(xs, 99) });

/** bwrap's arguments for the baseline: fresh namespaces, the host's /usr read-only, `echo hi`. */
export const RAW_BWRAP_ECHO = [
  "--unshare-all",
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
  "/usr/bin/echo",
  "hi",
];

/** Milliseconds from spawning `cmd` to its first byte of output. */
export function firstByte(cmd: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    child.stdout.once("data", () => resolve(performance.now() - start));
    child.on("error", reject);
  });
}
