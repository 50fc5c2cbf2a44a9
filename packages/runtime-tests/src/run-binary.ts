/** Running a runtime's binary (deno, bun) from the Node side: a bounded run, output collected. */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** This package's folder: runtimes run with it as cwd, so `src/…` paths and node_modules resolve. */
export const packageDir = fileURLToPath(new URL("..", import.meta.url));

export interface BinaryRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `binary args…` in this package's folder and collects its output. Killed after
 * `timeoutMs` (default 15 min); rejects if it printed nothing on stdout and failed (a crash,
 * not a failed case).
 */
export function runBinary(
  binary: string,
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<BinaryRun> {
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
        reject(new Error(`${binary} ${args.join(" ")} failed (${signal ?? `exit ${code}`}):\n${stderr.slice(-4000)}`));
        return;
      }
      resolve({ code, stdout, stderr });
    });
  });
}
