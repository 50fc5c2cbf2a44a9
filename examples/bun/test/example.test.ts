// Runs the example as a user would (`bun src/main.ts`, with the `bun` binary of the npm
// package) against a real sbx server, and checks what it printed.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type RunningServer, silentLogger, startServer } from "@sbx/server";
import { realServerAvailable } from "@sbx/server/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const exampleDir = fileURLToPath(new URL("..", import.meta.url));

/** The binary of the `bun` devDependency; missing: fails in CI, skips with a message elsewhere. */
function bunBinary(): string | undefined {
  let binary: string | undefined;
  try {
    binary = join(dirname(createRequire(import.meta.url).resolve("bun/package.json")), "bin", "bun.exe");
  } catch {}
  if (binary && existsSync(binary)) return binary;
  const message = "the bun binary is not installed (pnpm install runs the `bun` package's postinstall)";
  if (process.env.CI) throw new Error(message);
  console.warn(`skipping the Bun example: ${message}`);
  return undefined;
}

function bun(binary: string, args: readonly string[], env: Record<string, string>) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(binary, args, {
      cwd: exampleDir,
      env: { ...process.env, NO_COLOR: "1", ...env },
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
    const timer = setTimeout(() => child.kill("SIGKILL"), 100_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const binary = bunBinary();
const runnable = binary !== undefined && (await realServerAvailable("the Bun example"));

describe.skipIf(!runnable)("examples/bun", () => {
  let server: RunningServer | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), "sbx-example-bun-"));
  beforeAll(async () => {
    server = await startServer({ dataDir, listen: "127.0.0.1:0", token: "example-token", logger: silentLogger });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("bun src/main.ts: streams the countdown, copies a file in and the sorted result out", async () => {
    const { code, stdout, stderr } = await bun(binary!, ["src/main.ts"], {
      SBX_ENDPOINT: server!.url,
      SBX_TOKEN: "example-token",
    });
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toMatch(new RegExp(`^sbx from Bun \\d+\\.\\d+\\.\\d+, server ${server!.url}$`));
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^created sandbox \S+$/),
      "  sandbox: countdown 3",
      "  sandbox: countdown 2",
      "  sandbox: countdown 1",
      "  sandbox: liftoff!",
      "exit code 0",
      "sorted inside the sandbox (exit code 0)",
      "copied back: BEAVER, EMU, YAK, ZEBRA",
      "terminated, return code 137",
    ]);
    // Its local scratch folder is gone.
    expect(readdirSync(exampleDir).filter((name) => name.startsWith(".example-"))).toEqual([]);
  });
});
