/**
 * @sbx/server/testing — for test suites that need a real sbx server (local runtime): whether
 * one can run here, and one started in a temporary data dir. No test runner is assumed.
 *
 * ```ts
 * const available = await realServerAvailable("my tests");   // throws in CI if it cannot run
 * const server = await startTestServer();                    // server.url, server.token
 * await server.close(); server.removeData();
 * ```
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "./logger.js";
import { createLocalRuntime } from "./runtime/local/index.js";
import { type RunningServer, type ServerOptions, startServer } from "./server.js";

/** What keeps the real server from running on this machine (empty when it can run). */
export async function realServerProblems(): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), "sbx-prereq-"));
  const runtime = createLocalRuntime({ dataDir: dir });
  try {
    return await runtime.checkPrerequisites();
  } finally {
    await runtime.close(); // (the check claimed a range of host ids)
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Whether `what` (tests that need a real server, and whatever else `otherProblems` names) can
 * run here. With `CI` set it throws instead of answering false: CI never skips silently.
 * Elsewhere it warns with the reasons and answers false, so a developer machine can skip.
 */
export async function realServerAvailable(what = "real-server tests", otherProblems: string[] = []): Promise<boolean> {
  const problems = [...otherProblems, ...(await realServerProblems())];
  if (problems.length === 0) return true;
  const message = `${what} cannot run here:\n  ${problems.join("\n  ")}`;
  if (process.env.CI) throw new Error(message);
  console.warn(`skipping: ${message}`);
  return false;
}

/**
 * A real server on a free loopback port, its data in a fresh temporary dir (or `dataDir`),
 * with any other server options given.
 */
export async function startTestServer(
  options: Partial<ServerOptions> = {},
): Promise<RunningServer & { removeData(): void }> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "sbx-server-"));
  const server = await startServer({
    listen: "127.0.0.1:0",
    token: "test-token",
    logger: silentLogger,
    ...options,
    dataDir,
  });
  return { ...server, removeData: () => rmSync(dataDir, { recursive: true, force: true }) };
}
