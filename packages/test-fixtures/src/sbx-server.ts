/**
 * `sbx server` as users start it, for benchmarks: the CLI's build (packages/cli/dist/main.js:
 * build first) in a child process of its own, as root (it needs bubblewrap and cgroups), on
 * 127.0.0.1 (a free port), with a fresh data dir of its own and a token. Run from Node, or from
 * Bun (then the server runs in the `node` on PATH).
 */
import { type ChildProcessByStdio, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../../cli/dist/main.js", import.meta.url));

export interface SbxServerProcess {
  /** Where it listens, e.g. "http://127.0.0.1:41234". */
  readonly endpoint: string;
  readonly token: string;
  readonly dataDir: string;
  /** The server's process (its stdout is consumed here; its stderr is this process's). */
  readonly child: ChildProcessByStdio<null, Readable, null>;
  /** Stops the server (SIGTERM), waits for it to exit, and removes its data dir. */
  close(): Promise<void>;
}

export interface SbxServerOptions {
  /** Where its data dir is made (default: the OS's temp dir). */
  readonly parentDir?: string;
  /** The data dir's name before its random suffix (default "sbx-bench-"). */
  readonly prefix?: string;
  /** Default "bench". */
  readonly token?: string;
  /** More `sbx server` flags. */
  readonly args?: readonly string[];
}

/** Starts `sbx server`; resolves once it listens. */
export async function startSbxServer(options: SbxServerOptions = {}): Promise<SbxServerProcess> {
  const { parentDir = tmpdir(), prefix = "sbx-bench-", token = "bench", args = [] } = options;
  const dataDir = mkdtempSync(join(parentDir, prefix));
  const node = process.versions.bun ? "node" : process.execPath;
  const child = spawn(
    node,
    [CLI, "server", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--token", token, ...args],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    const endpoint = await new Promise<string>((resolve, reject) => {
      let out = "";
      const onData = (d: string) => {
        out += d;
        const m = /listening on (\S+)/.exec(out);
        if (!m) return;
        child.stdout.off("data", onData).resume(); // the rest of its output is not read
        resolve(m[1] as string);
      };
      child.stdout.setEncoding("utf8").on("data", onData);
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`sbx server exited ${code}: ${out}`)));
    });
    return {
      endpoint,
      token,
      dataDir,
      child,
      async close() {
        child.kill("SIGTERM");
        await exited;
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
}
