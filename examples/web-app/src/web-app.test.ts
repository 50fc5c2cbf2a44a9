// The example page in a real browser: a real sbx server (local runtime) in this process, the
// built page served from a static server on another port (so every call is cross-origin),
// Debian's Chromium driven by playwright-core. The test types a program into the page, clicks
// Run and reads what is on screen.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SandboxClient } from "@sbx/node";
import { type RunningServer, silentLogger, startServer } from "@sbx/server";
import { realServerAvailable } from "@sbx/server/testing";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildPage } from "../build.ts";
import { type StaticServer, serveStatic } from "../serve.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("../../../artifacts/", import.meta.url));

/** Fails loudly in CI when Chromium or the real server cannot run here; skips with a message elsewhere. */
const runnable = () =>
  realServerAvailable(
    "the web app test",
    existsSync(CHROMIUM) ? [] : [`${CHROMIUM} is missing (apt-get install chromium)`],
  );

/**
 * Prints "first", then waits (polling, with pauses) until /tmp/go exists in the sandbox — which
 * the test creates only after it has seen "first" on screen — then prints "second", a line on
 * stderr, and exits with 3.
 */
const GATED_PROGRAM = `import os, sys, time
print("first")
while not os.path.exists("/tmp/go"):
    time.sleep(0.05)
print("second")
print("oops: something went wrong", file=sys.stderr)
sys.exit(3)
`;

describe.skipIf(!(await runnable()))("web app example", () => {
  const token = "web-app-token";
  let dataDir: string;
  let server: RunningServer;
  let pageDir: string;
  let site: StaticServer;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "sbx-web-app-"));
    server = await startServer({ dataDir, listen: "127.0.0.1:0", token, logger: silentLogger });
    pageDir = await buildPage(mkdtempSync(join(tmpdir(), "sbx-web-app-page-")));
    site = await serveStatic(pageDir);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
    page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
    page.setDefaultTimeout(45_000); // waits for what the page shows; generous for a loaded CI machine
    page.on("pageerror", (error) => pageErrors.push(error.stack ?? error.message));
    const query = new URLSearchParams({ endpoint: server.url, token });
    await page.goto(`${site.url}?${query}`);
  });

  afterAll(async () => {
    await browser?.close();
    await site?.close();
    await server?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    if (pageDir) rmSync(pageDir, { recursive: true, force: true });
  });

  const textOf = async (selector: string) => (await page.locator(selector).allTextContents()).join("");

  it("is served from another origin than the sbx server", () => {
    expect(new URL(site.url).origin).not.toBe(new URL(server.url).origin);
  });

  it("runs the typed program and shows its output live, stderr apart, then the exit code", async () => {
    expect(await page.inputValue("#endpoint")).toBe(server.url);
    await page.fill("#code", GATED_PROGRAM);
    await page.click("#run");

    // "first" is on screen while the program is still blocked before printing "second".
    await page.locator("#output .stdout", { hasText: "first" }).waitFor();
    expect(await page.getAttribute("#status", "data-state")).toBe("running");
    expect(await page.textContent("#output")).toBe("first\n");

    // Let the program go on: create /tmp/go in the page's sandbox.
    const sandboxId = await page.getAttribute("#sandbox", "data-sandbox-id");
    expect(sandboxId).toBeTruthy();
    await using client = new SandboxClient({ endpoint: server.url, token });
    const sandbox = await client.sandboxes.fromId(sandboxId!);
    await sandbox.filesystem.writeText("go", "/tmp/go");

    await page.locator('#status[data-state="exited"]').waitFor();
    expect(await page.textContent("#status")).toBe("exit code 3");
    expect(await page.getAttribute("#status", "data-exit-code")).toBe("3");
    expect(await textOf("#output .stdout")).toBe("first\nsecond\n");
    expect(await textOf("#output .stderr")).toBe("oops: something went wrong\n");
    expect(await page.textContent("#output .exit")).toBe("[exit code 3]");

    // stderr is shown distinctly: its own elements, in another colour than stdout.
    const colour = (selector: string) => page.$eval(selector, (el) => getComputedStyle(el).color);
    expect(await colour("#output .stderr")).not.toBe(await colour("#output .stdout"));

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "web-app.png"), fullPage: true });
  });

  it("runs again in the same sandbox; a Python exception shows as stderr and exit code 1", async () => {
    const sandboxId = await page.getAttribute("#sandbox", "data-sandbox-id");
    await page.fill("#code", 'print("before")\nraise ValueError("boom")\n');
    await page.click("#run");
    await page.locator('#status[data-state="exited"]').waitFor();
    expect(await page.textContent("#status")).toBe("exit code 1");
    expect(await textOf("#output .stdout")).toBe("before\n");
    const stderr = await textOf("#output .stderr");
    expect(stderr).toContain("Traceback (most recent call last)");
    expect(stderr).toContain("ValueError: boom");
    expect(await page.getAttribute("#sandbox", "data-sandbox-id")).toBe(sandboxId);
  });

  it("shows a wrong token as an error, not as output", async () => {
    const other = await browser.newPage();
    other.setDefaultTimeout(45_000);
    try {
      await other.goto(`${site.url}?${new URLSearchParams({ endpoint: server.url, token: "wrong" })}`);
      await other.click("#run");
      await other.locator('#status[data-state="error"]').waitFor();
      expect(await other.textContent("#status")).toMatch(/^authentication: /);
      expect(await other.textContent("#output")).toBe("");
    } finally {
      await other.close();
    }
  });

  it("raised no errors in the page", () => {
    expect(pageErrors).toEqual([]);
  });
});
