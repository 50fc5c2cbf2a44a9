// Runs the example as a user would (`deno task start`, with the task's permissions) against a
// real sbx server, and checks what it printed; and type checks it with `deno check`.
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type RunningServer, silentLogger, startServer } from "@sbx/server";
import { realServerAvailable } from "@sbx/server/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const exampleDir = fileURLToPath(new URL("..", import.meta.url));

/** The binary of the `deno` devDependency; missing: fails in CI, skips with a message elsewhere. */
function denoBinary(): string | undefined {
  try {
    return (createRequire(import.meta.url)("deno/install_api.cjs") as { runInstall(): string }).runInstall();
  } catch (error) {
    if (process.env.CI) throw error;
    console.warn(`skipping the Deno example: the deno binary is not installed: ${String(error)}`);
    return undefined;
  }
}

function deno(binary: string, args: readonly string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(binary, args, {
      cwd: exampleDir,
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...env },
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

const binary = denoBinary();
const runnable = binary !== undefined && (await realServerAvailable("the Deno example"));

describe.skipIf(!runnable)("examples/deno", () => {
  let server: RunningServer | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), "sbx-example-deno-"));
  beforeAll(async () => {
    server = await startServer({ dataDir, listen: "127.0.0.1:0", token: "example-token", logger: silentLogger });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("deno task start: streams the countdown, copies a file in and the sorted result out", async () => {
    const { code, stdout, stderr } = await deno(binary!, ["task", "--quiet", "start"], {
      SBX_ENDPOINT: server!.url,
      SBX_TOKEN: "example-token",
    });
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toMatch(new RegExp(`^sbx from Deno \\d+\\.\\d+\\.\\d+, server ${server!.url}$`));
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

  it("deno check main.ts", async () => {
    // Against the workspace's sources: built .d.ts files of workspace packages lose their
    // types in Deno (their "./x.js" imports resolve to the untyped .js); see packages/deno.
    const { code, stderr } = await deno(binary!, [
      "check",
      "--import-map=test/monorepo-imports.json",
      "--sloppy-imports",
      "main.ts",
    ]);
    expect(code, stderr).toBe(0);
  });
});
