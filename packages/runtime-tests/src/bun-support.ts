/** Starting Bun from the Node side: the binary of the `bun` npm package, and a bounded run of it. */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** This package's folder: Bun runs with it as cwd, so `src/…` paths resolve. */
export const packageDir = fileURLToPath(new URL("..", import.meta.url));

/**
 * The `bun` binary the `bun` devDependency installed (its postinstall puts the platform's
 * binary at bin/bun.exe). Missing: fails in CI, skips with a message elsewhere.
 */
export function bunBinary(): string | undefined {
  let binary: string | undefined;
  try {
    const pkg = createRequire(import.meta.url).resolve("bun/package.json");
    binary = join(dirname(pkg), "bin", "bun.exe");
  } catch {}
  if (binary && existsSync(binary)) return binary;
  const message = "the bun binary is not installed (pnpm install installs the `bun` package and runs its postinstall)";
  if (process.env.CI) throw new Error(message);
  console.warn(`skipping Bun tests: ${message}`);
  return undefined;
}

export interface BunRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `bun args…` in this package's folder and collects its output. Killed after
 * `timeoutMs`; rejects if it printed nothing on stdout and failed (a crash, not a failed case).
 */
export function runBun(
  binary: string,
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<BunRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, {
      cwd: packageDir,
      env: { ...process.env, NO_COLOR: "1", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 15 * 60_000);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0 && stdout.trim() === "") {
        reject(new Error(`bun ${args.join(" ")} failed (${signal ?? `exit ${code}`}):\n${stderr.slice(-4000)}`));
        return;
      }
      resolve({ code, stdout, stderr });
    });
  });
}
