// sb.tunnel in Deno and Bun (their own listeners: Deno.listen, Bun.listen) against the fake
// listening on a port, whose onPortConnection handler echoes: 20 connections at once, one of
// them 3 MiB, each gets its own bytes back; after close() the local port refuses.
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
  let target: RemoteTarget;
  beforeAll(async () => {
    fake = createFakeServer({ token: TOKEN });
    fake.onPortConnection(ECHO_PORT, async ({ readable, writable }) => {
      await readable.pipeTo(writable);
    });
    const { url } = await fake.listen();
    target = { kind: "fake", url, token: TOKEN } as RemoteTarget;
  });
  afterAll(() => fake?.close());

  const check = (stdout: string, stderr: string, code: number | null) => {
    const line = stdout.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
    if (!line || code !== 0) throw new Error(`exited ${code}:\n${stdout}\n${stderr}`);
    const seen = JSON.parse(line.slice(RESULT_PREFIX.length));
    expect(seen.localPort).toBeGreaterThan(0);
    expect(seen.bigIntact).toBe(true);
    expect(seen.small).toEqual(Array.from({ length: 19 }, (_, i) => `connection ${i + 1}`));
    expect(seen.afterClose).toBe("ECONNREFUSED");
  };

  const deno = denoBinary();
  it.runIf(deno)("deno", async () => {
    const run = await runDeno(
      deno!,
      [
        "run",
        "--node-modules-dir=manual",
        "--sloppy-imports",
        `${allowNetTo([target.url])},127.0.0.1`,
        "src/tunnel-entry.ts",
        "deno",
        JSON.stringify(target),
      ],
      { timeoutMs: 120_000 },
    );
    check(run.stdout, run.stderr, run.code);
  });

  const bun = bunBinary();
  it.runIf(bun)("bun", async () => {
    const run = await runBun(bun!, ["src/tunnel-entry.ts", "bun", JSON.stringify(target)], { timeoutMs: 120_000 });
    check(run.stdout, run.stderr, run.code);
  });
});
