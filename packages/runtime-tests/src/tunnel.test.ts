// sb.tunnel in Deno and Bun (their own listeners, Deno.listen and Bun.listen, and their own
// WebSockets) against the fake listening on a port behind a TCP proxy this side controls:
// 100 connections at once over one connection to the server, each its own bytes back; a
// connection nobody reads holds up no other; a cut connection to the server ends the local
// connection open through it and the next one works; after close() the local port refuses.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { sourceOrEcho } from "@sbx/test-fixtures/port-apps";
import { TcpProxy } from "@sbx/test-fixtures/tcp-proxy";
import { createFakeServer, type FakeServer } from "@sbx/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bunBinary, runBun } from "./bun-support.js";
import { allowNetTo, denoBinary, runDeno } from "./deno-support.js";
import { RESULT_PREFIX } from "./remote-suite.js";
import type { RemoteTarget } from "./targets.js";

const ECHO_PORT = 7000;
const TOKEN = "tunnel-secret";

describe("sb.tunnel in Deno and Bun", () => {
  let fake: FakeServer;
  let proxy: TcpProxy;
  let control: Server;
  let controlUrl: string;
  let target: RemoteTarget;
  beforeAll(async () => {
    fake = createFakeServer({ token: TOKEN });
    fake.onPortConnection(ECHO_PORT, sourceOrEcho);
    const { url } = await fake.listen();
    proxy = new TcpProxy(url);
    target = { kind: "fake", url: await proxy.start(), token: TOKEN } as RemoteTarget;
    control = createServer((req, res) => {
      if (req.url === "/cut") proxy.cut();
      res.end("ok");
    });
    await new Promise<void>((resolve) => control.listen(0, "127.0.0.1", resolve));
    controlUrl = `http://127.0.0.1:${(control.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    control?.close();
    await proxy?.stop();
    await fake?.close();
  });

  const check = (stdout: string, stderr: string, code: number | null, cutEnds: string[]) => {
    const line = stdout.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
    if (!line || code !== 0) throw new Error(`exited ${code}:\n${stdout}\n${stderr}`);
    const seen = JSON.parse(line.slice(RESULT_PREFIX.length));
    expect(seen.localPort).toBeGreaterThan(0);
    expect(seen.intact).toBe(100);
    expect(seen.bigIntact).toBe(true);
    expect(cutEnds).toContain(seen.afterCut);
    expect(seen.afterDrop).toBe(true);
    expect(seen.afterClose).toBe("ECONNREFUSED");
  };
  const tunnelsBefore = () => proxy.count("/tunnel HTTP/1.1");

  const deno = denoBinary();
  it.runIf(deno)("deno", async () => {
    const before = tunnelsBefore();
    const run = await runDeno(
      deno!,
      [
        "run",
        "--node-modules-dir=manual",
        "--sloppy-imports",
        `${allowNetTo([target.url, controlUrl])},127.0.0.1`,
        "src/tunnel-entry.ts",
        "deno",
        JSON.stringify(target),
        controlUrl,
      ],
      { timeoutMs: 120_000 },
    );
    // Deno cannot send a TCP reset: a cut connection ends.
    check(run.stdout, run.stderr, run.code, ["end", "ECONNRESET"]);
    expect(tunnelsBefore() - before, "one connection to the server, then one after the cut").toBe(2);
  });

  const bun = bunBinary();
  it.runIf(bun)("bun", async () => {
    const before = tunnelsBefore();
    const run = await runBun(bun!, ["src/tunnel-entry.ts", "bun", JSON.stringify(target), controlUrl], {
      timeoutMs: 120_000,
    });
    check(run.stdout, run.stderr, run.code, ["ECONNRESET"]);
    expect(tunnelsBefore() - before, "one connection to the server, then one after the cut").toBe(2);
  });
});
