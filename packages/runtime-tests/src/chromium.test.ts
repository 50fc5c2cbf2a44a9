// @sbx/web in a real browser: Debian's Chromium, headless, driven by playwright-core. The page
// (chromium-entry.ts, bundled with esbuild) is served from a static server on another port
// than the sbx servers, so every call is cross-origin: CORS preflights, the bearer token,
// Connect over HTTP/1.1 through fetch, server streaming and the raw HTTP routes all go
// through the browser's own rules. The conformance suite runs in the page and in a module
// Web Worker; each case is one vitest test.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SandboxClient as NodeSandboxClient } from "@sbx/node";
import { silentLogger, startServer } from "@sbx/server";
import { build } from "esbuild";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SbxPage } from "./chromium-entry.js";
import { declareRuntimeConformance, parseResults, realServerAvailable, useTargets } from "./support.js";

const CHROMIUM = "/usr/bin/chromium";

/** Fails loudly in CI without Chromium; skips with a message elsewhere. */
function chromiumAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  const message = `${CHROMIUM} is missing (apt-get install chromium; scripts/test.sh installs it)`;
  if (process.env.CI) throw new Error(message);
  console.warn(`skipping the Chromium tests: ${message}`);
  return false;
}

const runnable = chromiumAvailable() && (await realServerAvailable());

/** The page and its script, served over HTTP from their own origin. */
async function servePage(): Promise<{ url: string; close: () => Promise<void> }> {
  const bundled = await build({
    entryPoints: [fileURLToPath(new URL("./chromium-entry.ts", import.meta.url))],
    bundle: true,
    platform: "browser",
    format: "esm",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  const script = bundled.outputFiles[0]!.text;
  const html = `<!doctype html><meta charset="utf-8"><title>sbx</title><pre id="out"></pre><script type="module" src="/page.js"></script>`;
  const server: Server = createServer((req, res) => {
    if (req.url === "/") res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
    else if (req.url === "/page.js")
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(script);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** One browser and the page's server for the whole file. */
function useBrowser(): { open(): Promise<{ page: Page; console: string[] }>; readonly pageUrl: string } {
  let browser: Browser | undefined;
  let served: Awaited<ReturnType<typeof servePage>> | undefined;
  beforeAll(async () => {
    served = await servePage();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-dev-shm-usage"], // root in a container
    });
  });
  afterAll(async () => {
    await browser?.close();
    await served?.close();
  });
  return {
    get pageUrl() {
      return served!.url;
    },
    async open() {
      const page = await browser!.newPage();
      const lines: string[] = [];
      page.on("console", (message) => lines.push(message.text()));
      page.on("pageerror", (error) => lines.push(`page error: ${error.stack ?? error.message}`));
      await page.goto(served!.url);
      await page.waitForFunction(() => document.title === "sbx ready", undefined, { timeout: 30_000 });
      return { page, console: lines };
    },
  };
}

/** The page's API, inside functions given to `page.evaluate` (they run in the browser). */
declare const window: SbxPage;

describe.skipIf(!runnable)("chromium", () => {
  const browser = useBrowser();

  // The whole suite, once in the page and once in a module Web Worker it starts.
  for (const [runtime, where] of [
    ["chromium", "page"],
    ["chromium web worker", "worker"],
  ] as const) {
    describe(`in the ${where}`, () => {
      declareRuntimeConformance(runtime, async (targets) => {
        const { page, console } = await browser.open();
        try {
          const count = await page.evaluate(
            ([r, t, w]) => (w === "page" ? window.sbxConformance(r, t) : window.sbxConformanceInWorker(r, t)),
            [runtime, targets, where] as const,
          );
          const results = parseResults(console.join("\n"));
          expect(results).toHaveLength(count);
          return results;
        } finally {
          await page.close();
        }
      });
    });
  }

  describe("a page on another origin", () => {
    const servers = useTargets();
    let page: Page;
    let pageConsole: string[];
    const real = () => servers.targets.find((t) => t.kind === "real server")!;
    beforeAll(async () => {
      ({ page, console: pageConsole } = await browser.open());
    });
    afterAll(() => page?.close());

    it("is another origin than the server", () => {
      expect(new URL(browser.pageUrl).origin).not.toBe(new URL(real().url).origin);
    });

    for (const rawHttp of [true, false]) {
      it(`sees a process's output live (${rawHttp ? "raw HTTP stream" : "Connect server stream"})`, async () => {
        await page.evaluate(([t, o]) => window.sbxLive.start(t, o), [real(), { rawHttp }] as const);
        // The process prints "first", then waits for a line on stdin: while it waits, "first"
        // must already be on the page.
        await page.waitForFunction(() => document.getElementById("out")?.textContent?.includes("first"), undefined, {
          timeout: 30_000,
        });
        expect(await page.evaluate(() => window.sbxLive.poll())).toBeNull();
        expect(await page.textContent("#out")).toBe("first\n");
        const { exitCode, requests } = await page.evaluate(() => window.sbxLive.finish());
        expect(exitCode).toBe(0);
        expect(await page.textContent("#out")).toBe("first\nsecond go\n");
        const rawReads = requests.filter((path) => path.startsWith("/sbx.v1/output/"));
        if (rawHttp) expect(rawReads.length).toBeGreaterThan(0);
        else expect(rawReads).toEqual([]);
        expect(requests).toContain("/sbx.v1.ProcessService/ReadOutput");
      });
    }

    it("creates a sandbox with the token", async () => {
      for (const target of servers.targets) {
        const outcome = await page.evaluate(([u, k]) => window.sbxCreate(u, k), [target.url, target.token] as const);
        expect(outcome, target.kind).toEqual({ created: true });
      }
    });

    for (const [label, token] of [
      ["without a token", undefined],
      ["with a wrong token", "not-the-token"],
    ] as const) {
      it(`refuses a request ${label}: AuthenticationError in the page`, async () => {
        for (const target of servers.targets) {
          const outcome = await page.evaluate(([u, k]) => window.sbxCreate(u, k), [target.url, token] as const);
          expect(outcome, target.kind).toMatchObject({ created: false, errorClass: "AuthenticationError" });
        }
      });
    }

    it("cannot call a server that allows only another origin (stopped at the preflight)", async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "sbx-cors-"));
      const server = await startServer({
        dataDir,
        listen: "127.0.0.1:0",
        token: "cors-token",
        corsOrigin: "http://allowed.invalid",
        logger: silentLogger,
      });
      try {
        const outcome = await page.evaluate(([u, k]) => window.sbxCreate(u, k), [server.url, "cors-token"] as const);
        expect(outcome.created).toBe(false);
        expect(outcome.errorClass, outcome.error).toBe("ConnectionError");
        // The browser never sent the call itself: nothing was created.
        await using client = new NodeSandboxClient({ endpoint: server.url, token: "cors-token" });
        const all: unknown[] = [];
        for await (const sb of client.sandboxes.list({ includeFinished: true })) all.push(sb);
        expect(all).toEqual([]);
      } finally {
        await server.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    it("reaches a port in a sandbox of the real server with sb.connect (a WebSocket from the page)", async () => {
      const text = "from the browser\n".repeat(2000);
      const outcome = await page.evaluate(([t, x]) => window.sbxConnectEcho(t, x), [real(), text] as const);
      expect(outcome.echoed).toBe(text);
      expect(outcome.refused).toEqual({ tunnelError: true, port: 7001 });
    });

    it("printed no page errors", () => {
      expect(pageConsole.filter((line) => line.startsWith("page error:"))).toEqual([]);
    });
  });
});
