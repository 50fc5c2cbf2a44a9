/**
 * The page's script in Chromium (bundled by chromium.test.ts with esbuild), and the same file
 * as a module Web Worker's script. It imports only `@sbx/web`, the browser-safe conformance
 * runner, and the programs real sandboxes run as test apps. The Node side drives it through
 * globals on `window` (see `SbxPage`):
 * - `sbxConformance(runtime, targets)` runs the suite in the page, and
 *   `sbxConformanceInWorker(runtime, targets)` starts a worker on this script that runs it
 *   there; every result is printed to the console as a RESULT_PREFIX line.
 * - `sbxLive` runs a process on another origin and shows its output in `#out` as it arrives.
 * - `sbxCreate` tries to create a sandbox with a given token (or none) and says how it went.
 */

import { startSandboxApp, TCP_ECHO } from "@sbx/test-fixtures/sandbox-apps";
import type { CaseResult } from "@sbx/testing/conformance";
import * as sdk from "@sbx/web";
import { RESULT_PREFIX, runRemoteConformance } from "./remote-suite.js";
import type { RemoteTarget } from "./targets.js";

/** How a create call made in the page went. */
export interface CreateOutcome {
  readonly created: boolean;
  /** The error's class, e.g. "AuthenticationError"; checked with instanceof against the SDK's. */
  readonly errorClass?: "AuthenticationError" | "ConnectionError" | "other";
  readonly error?: string;
}

/** What the page puts on `window` for the Node side. */
export interface SbxPage {
  sbxConformance(runtime: string, targets: readonly RemoteTarget[]): Promise<number>;
  sbxConformanceInWorker(runtime: string, targets: readonly RemoteTarget[]): Promise<number>;
  sbxLive: {
    start(target: RemoteTarget, options: { rawHttp: boolean }): Promise<void>;
    poll(): Promise<number | null>;
    finish(): Promise<{ exitCode: number; requests: string[] }>;
  };
  sbxCreate(endpoint: string, token: string | undefined): Promise<CreateOutcome>;
  sbxConnectEcho(target: RemoteTarget, text: string): Promise<ConnectOutcome>;
}

/** What `sb.connect` did in the page: an echo's answer, and a port where nothing listens. */
export interface ConnectOutcome {
  readonly echoed: string;
  readonly refused: { readonly tunnelError: boolean; readonly port: number | undefined };
}

const client = (target: RemoteTarget, options: sdk.WebSandboxClientOptions = {}) =>
  new sdk.SandboxClient({ endpoint: target.url, token: target.token, ...options });

const report = (result: CaseResult) => console.log(RESULT_PREFIX + JSON.stringify(result));

const run = (runtime: string, targets: readonly RemoteTarget[], onResult: (result: CaseResult) => void) =>
  runRemoteConformance(runtime, sdk, (target) => client(target), targets, onResult);

interface WorkerRequest {
  readonly runtime: string;
  readonly targets: readonly RemoteTarget[];
}

type WorkerMessage =
  | { type: "result"; result: CaseResult }
  | { type: "done"; count: number }
  | { type: "error"; error: string };

const inWorker = typeof document === "undefined";

if (inWorker) {
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
    postMessage(message: WorkerMessage): void;
  };
  scope.onmessage = (event) => {
    const { runtime, targets } = event.data;
    run(runtime, targets, (result) => scope.postMessage({ type: "result", result })).then(
      (results) => scope.postMessage({ type: "done", count: results.length }),
      (error: unknown) => scope.postMessage({ type: "error", error: String(error) }),
    );
  };
} else {
  let live:
    | {
        sandbox: sdk.Sandbox;
        proc: sdk.ContainerProcess;
        pump: Promise<void>;
        requests: string[];
        client: sdk.SandboxClient;
      }
    | undefined;

  const page: SbxPage = {
    sbxConformance: async (runtime, targets) => (await run(runtime, targets, report)).length,

    sbxConformanceInWorker: (runtime, targets) =>
      new Promise((resolve, reject) => {
        // This very script, loaded again as a module worker (same origin as the page).
        const worker = new Worker(import.meta.url, { type: "module" });
        worker.onerror = (event) => reject(new Error(`worker failed: ${event.message}`));
        worker.onmessage = (event: MessageEvent<WorkerMessage>) => {
          const message = event.data;
          if (message.type === "result") report(message.result);
          else {
            worker.terminate();
            if (message.type === "done") resolve(message.count);
            else reject(new Error(`the worker's run failed: ${message.error}`));
          }
        };
        worker.postMessage({ runtime, targets } satisfies WorkerRequest);
      }),

    sbxLive: {
      // A process that prints a line, then waits for a line on stdin before printing the next:
      // it cannot end before the page has answered, so the first line reaching #out while
      // it runs shows output is live, without timing anything.
      async start(target, { rawHttp }) {
        const requests: string[] = [];
        const recording: sdk.FetchFunction = (input, init) => {
          requests.push(new URL(input instanceof Request ? input.url : input).pathname);
          return fetch(input, init);
        };
        const c = client(target, { rawHttp, fetch: recording });
        const sandbox = await c.sandboxes.create();
        const proc = await sandbox.exec(["sh", "-c", "echo first; read go; echo second $go"]);
        const out = document.getElementById("out")!;
        out.textContent = "";
        const pump = (async () => {
          for await (const chunk of proc.stdout) out.textContent += chunk;
        })();
        live = { sandbox, proc, pump, requests, client: c };
      },
      poll: () => live!.proc.poll(),
      async finish() {
        const { sandbox, proc, pump, requests, client: c } = live!;
        await proc.stdin.write("go\n");
        await proc.stdin.close();
        await pump;
        const exitCode = await proc.wait();
        await sandbox.terminate();
        await c.close();
        return { exitCode, requests };
      },
    },

    async sbxCreate(endpoint, token) {
      // No retries: a refusal is final, and a network error would only be tried again.
      const c = new sdk.SandboxClient({ endpoint, maxRetries: 0, ...(token === undefined ? {} : { token }) });
      try {
        const sb = await c.sandboxes.create();
        await sb.terminate();
        return { created: true };
      } catch (error) {
        const errorClass =
          error instanceof sdk.AuthenticationError
            ? "AuthenticationError"
            : error instanceof sdk.ConnectionError
              ? "ConnectionError"
              : "other";
        return { created: false, errorClass, error: String(error) };
      } finally {
        await c.close();
      }
    },
    async sbxConnectEcho(target, text) {
      const c = client(target);
      try {
        const sb = await c.sandboxes.create();
        try {
          await startSandboxApp(sb, TCP_ECHO, [7000]);
          const conn = await sb.connect(7000);
          const writer = conn.writable.getWriter();
          await writer.write(new TextEncoder().encode(text));
          await writer.close();
          let echoed = "";
          const decoder = new TextDecoder();
          const reader = conn.readable.getReader();
          for (let next = await reader.read(); !next.done; next = await reader.read()) {
            echoed += decoder.decode(next.value, { stream: true });
          }
          const refused = await sb.connect(7001).then(
            () => ({ tunnelError: false, port: undefined }),
            (error) => ({ tunnelError: error instanceof sdk.TunnelError, port: (error as sdk.TunnelError).port }),
          );
          return { echoed, refused };
        } finally {
          await sb.terminate();
        }
      } finally {
        await c.close();
      }
    },
  };
  Object.assign(globalThis, page);
  document.title = "sbx ready";
}
