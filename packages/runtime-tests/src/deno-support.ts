/** Starting Deno from the Node side: the binary of the `deno` npm package, and a bounded run of it. */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** This package's folder: Deno runs with it as cwd, so `src/…` paths and node_modules resolve. */
export const packageDir = fileURLToPath(new URL("..", import.meta.url));

/**
 * The `deno` binary of the `deno` devDependency (the platform's binary comes in its optional
 * dependency, e.g. `@deno/linux-x64-glibc`; the package's own installer finds it, so its
 * postinstall need not run). Missing: fails in CI, skips with a message elsewhere.
 */
export function denoBinary(): string | undefined {
  try {
    const install = createRequire(import.meta.url)("deno/install_api.cjs") as { runInstall(): string };
    return install.runInstall();
  } catch (error) {
    const message = `the deno binary is not installed (the \`deno\` npm package): ${String(error)}`;
    if (process.env.CI) throw new Error(message);
    console.warn(`skipping Deno tests: ${message}`);
    return undefined;
  }
}

export interface DenoRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `deno args…` in this package's folder and collects its output. Killed after
 * `timeoutMs`; rejects if it printed nothing on stdout and failed (a crash, not a failed case).
 */
export function runDeno(
  binary: string,
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<DenoRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, {
      cwd: packageDir,
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", DENO_NO_PROMPT: "1", ...options.env },
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
        reject(new Error(`deno ${args.join(" ")} failed (${signal ?? `exit ${code}`}):\n${stderr.slice(-4000)}`));
        return;
      }
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * `--allow-net` for exactly the hosts and ports of `urls` (the targets), nothing else.
 */
export const allowNetTo = (urls: readonly string[]): string =>
  `--allow-net=${[...new Set(urls.map((url) => new URL(url).host))].join(",")}`;
