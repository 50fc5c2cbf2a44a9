// @sbx/deno in the real Deno (the `deno` npm package's binary): type checks of its entry
// points and of what JSR would publish, and the runtime-specific parts — configuration from
// the environment under Deno's permissions, local files through Deno's file API.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createFakeServer } from "@sbx/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const packageDir = fileURLToPath(new URL("..", import.meta.url));

/** The binary of the `deno` devDependency; missing: fails in CI, skips with a message elsewhere. */
function denoBinary(): string | undefined {
  try {
    return (createRequire(import.meta.url)("deno/install_api.cjs") as { runInstall(): string }).runInstall();
  } catch (error) {
    if (process.env.CI) throw error;
    console.warn(`skipping Deno tests: the deno binary is not installed: ${String(error)}`);
    return undefined;
  }
}

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `deno args…` in this package's folder, with `env` added to a clean environment. */
function deno(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary!, args, {
      cwd: packageDir,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "",
        NO_COLOR: "1",
        DENO_NO_UPDATE_CHECK: "1",
        ...env,
      },
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

/** The JSON line a fixture printed; fails with everything it printed otherwise. */
function report(run: Run): Record<string, unknown> {
  if (run.code !== 0) throw new Error(`deno exited ${run.code}:\n${run.stdout}\n${run.stderr}`);
  return JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "");
}

const binary = denoBinary();
const run = ["run", "--node-modules-dir=manual", "--no-prompt"];

describe.skipIf(!binary)("@sbx/deno in Deno", { timeout: 120_000 }, () => {
  const fake = createFakeServer({ token: "deno-token" });
  let url = "";
  let close = async () => {};
  beforeAll(async () => {
    ({ url, close } = await fake.listen());
  });
  afterAll(async () => {
    await close();
    await fake.close();
  });

  it("deno check passes on the entry points", async () => {
    // @sbx/core is checked from its sources: its built .d.ts files import "./x.js", which Deno
    // resolves to the .js beside them (untyped) when the package is a workspace folder rather
    // than a real npm package. Sloppy imports let core's own "./x.js" imports find "./x.ts";
    // this package's own imports are all ".ts" (see jsr.test.ts), so that changes nothing here.
    const result = await deno([
      "check",
      "--node-modules-dir=manual",
      "--import-map=test/monorepo-imports.json",
      "--sloppy-imports",
      "src/index.ts",
      "src/effect.ts",
      "test/env.ts",
      "test/local-files.ts",
    ]);
    expect(result.stderr).not.toMatch(/error/i);
    expect(result.code).toBe(0);
  });

  it("jsr.json is publishable: no slow types, only the sources (deno publish --dry-run)", async () => {
    const result = await deno(["publish", "--dry-run", "--allow-dirty", "--no-check"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain("src/index.ts");
    expect(result.stderr).not.toMatch(/\.test\.ts|dist\//);
  });

  it("without --allow-env the client uses its defaults instead of failing", async () => {
    const result = await deno([...run, "test/env.ts"], { SBX_ENDPOINT: "http://127.0.0.1:1", SBX_TOKEN: "x" });
    expect(report(result)).toEqual({ endpoint: "http://127.0.0.1:7420" });
  });

  it("with --allow-env it reads SBX_ENDPOINT and SBX_TOKEN (Promise API and Effect layer)", async () => {
    const result = await deno(
      [...run, "--allow-env=SBX_ENDPOINT,SBX_TOKEN", `--allow-net=${new URL(url).host}`, "test/env.ts", "use"],
      { SBX_ENDPOINT: url, SBX_TOKEN: "deno-token" },
    );
    expect(report(result)).toEqual({ endpoint: url, promise: "hello from deno\n", effect: "hello from effect\n" });
  });

  it("copyFromLocal / copyToLocal: parents created, files replaced whole, failures leave nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sbx-deno-local-"));
    try {
      const result = await deno([
        ...run,
        `--allow-net=${new URL(url).host}`,
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
        "test/local-files.ts",
        url,
        "deno-token",
        dir,
      ]);
      expect(report(result)).toEqual({
        inside: "héllo from deno\n",
        outside: "héllo from deno\n",
        replaced: "new",
        copyDirectoryOut: "SandboxFilesystemIsADirectoryError",
        afterFailure: "new",
        copyMissingIn: "InvalidError",
        entries: ["in.txt", "keep.txt", "new"],
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
