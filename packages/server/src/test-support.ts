/**
 * Test helpers: a real server (local runtime) in a temp data dir. Suites that need root and
 * bubblewrap call `realServerAvailable()` first: it fails loudly in CI and lets a developer
 * machine without them skip with a message.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createConnectTransport } from "@connectrpc/connect-node";
import { SandboxClient as CoreClient } from "@sbx/core";
import { fetchRawHttp, type RawHttpClient } from "@sbx/core/adapter";
import { connectClients } from "@sbx/core/connect";
import { type Sandbox, SandboxClient } from "@sbx/node";
import type { SandboxRuntime } from "@sbx/server-kit";
import { afterAll, beforeAll } from "vitest";
import { createLocalRuntime } from "./runtime/local/index.js";
import type { ServerOptions } from "./server.js";
import { startTestServer } from "./testing.js";

export { realServerAvailable, startTestServer } from "./testing.js";

/**
 * A real server for the enclosing `describe`: started before its tests, closed and its data
 * removed after them. Read `url` and `token` inside tests and hooks (not at definition time).
 */
export function useTestServer(options: Partial<ServerOptions> = {}): {
  readonly url: string;
  readonly token: string;
  readonly dataDir: string;
} {
  let server: Awaited<ReturnType<typeof startTestServer>> | undefined;
  beforeAll(async () => {
    server = await startTestServer(options);
  });
  afterAll(async () => {
    await server?.close();
    server?.removeData();
  });
  const started = () => {
    if (!server) throw new Error("the test server is not running (use it inside tests and hooks)");
    return server;
  };
  return {
    get url() {
      return started().url;
    },
    get token() {
      return started().token;
    },
    get dataDir() {
      return started().dataDir;
    },
  };
}

/**
 * A local runtime (no server) over a fresh data dir (`prefix`…) for the enclosing `describe`:
 * made before its tests (read `runtime` and `dataDir` inside tests and hooks), closed and its
 * data removed after them.
 */
export function useLocalRuntime(prefix: string): { readonly runtime: SandboxRuntime; readonly dataDir: string } {
  const local = {} as { runtime?: SandboxRuntime; dataDir?: string };
  beforeAll(() => {
    local.dataDir = mkdtempSync(join(tmpdir(), prefix));
    chmodSync(local.dataDir, 0o711); // the sandbox user must reach its layer below (as startServer does)
    local.runtime = createLocalRuntime({ dataDir: local.dataDir, warmPoolSize: 0 });
  });
  afterAll(async () => {
    await local.runtime?.close();
    if (local.dataDir) rmSync(local.dataDir, { recursive: true, force: true });
  });
  return local as { readonly runtime: SandboxRuntime; readonly dataDir: string };
}

/**
 * A client and one sandbox on `server` for the enclosing `describe`, created before its tests
 * and terminated after them. Read them inside tests and hooks.
 */
export function useTestSandbox(server: { readonly url: string; readonly token: string }): {
  readonly client: SandboxClient;
  readonly sandbox: Sandbox;
} {
  let client: SandboxClient | undefined;
  let sandbox: Sandbox | undefined;
  beforeAll(async () => {
    client = new SandboxClient({ endpoint: server.url, token: server.token });
    sandbox = await client.sandboxes.create();
  });
  afterAll(async () => {
    await sandbox?.terminate();
    await client?.close();
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("the test sandbox is not ready (use it inside tests and hooks)");
    return value;
  };
  return {
    get client() {
      return ready(client);
    },
    get sandbox() {
      return ready(sandbox);
    },
  };
}

/** What `promise` rejects with (fails the test when it resolves). */
export async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure");
}

/** A core client whose Connect calls go over HTTP/2 and raw HTTP through `fetch` (as browsers, Deno and Bun do). */
export function fetchClient(
  server: { readonly url: string; readonly token: string },
  rawHttp: (endpoint: string) => RawHttpClient = fetchRawHttp,
): CoreClient {
  return new CoreClient(
    { endpoint: server.url, token: server.token },
    {
      createClients: (endpoint) => connectClients(createConnectTransport({ baseUrl: endpoint, httpVersion: "2" })),
      connectClients,
      createRawHttp: (endpoint) => rawHttp(endpoint),
    },
  );
}

const CLI = join(dirname(fileURLToPath(import.meta.url)), "../../cli/dist/main.js");

/**
 * `sbx server` as users start it (the CLI's build, a child process, token "t") on 127.0.0.1 at
 * `port` (0: any), with `args` added; resolves once it listens. Stop it with a signal.
 */
export async function startCliServer(
  dataDir: string,
  { port = 0, args = [] }: { port?: number; args?: readonly string[] } = {},
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [CLI, "server", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--token", "t", ...args],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on("data", (d) => {
      output += d;
      const match = /sbx server listening on (\S+)/.exec(output);
      if (match) resolve(match[1] as string);
    });
    child.stderr?.on("data", (d) => {
      output += d;
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}: ${output}`)));
  });
  return { child, url };
}
