// @sbx/web's client under Node's own fetch (the same WHATWG fetch a browser has) against the
// fake server on a port; the real browser runs are in packages/runtime-tests (chromium.test.ts).
import { createFakeServer } from "@sbx/testing";
import { defineConformanceSuite, FAKE_KNOWN_DIFFERENCES } from "@sbx/testing/conformance";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import * as sdk from "./index.js";
import { AuthenticationError, DEFAULT_ENDPOINT, type FetchFunction, SandboxClient } from "./index.js";

describe("@sbx/web SandboxClient", () => {
  const fake = createFakeServer({ token: "web-token" });
  let url = "";
  let close: () => Promise<void> = async () => {};
  beforeAll(async () => {
    ({ url, close } = await fake.listen());
  });
  afterAll(async () => {
    await close();
    await fake.close();
  });

  it("defaults to core's endpoint (no environment in a browser)", async () => {
    await using client = new SandboxClient();
    expect(client.endpoint).toBe(DEFAULT_ENDPOINT);
  });

  it("sends every request through the given fetch, with the bearer token", async () => {
    const seen: { path: string; authorization: string | null }[] = [];
    const recording: FetchFunction = (input, init) => {
      const request = new Request(input, init);
      seen.push({ path: new URL(request.url).pathname, authorization: request.headers.get("authorization") });
      return fetch(request);
    };
    await using client = new SandboxClient({ endpoint: url, token: "web-token", fetch: recording });
    const sb = await client.sandboxes.create({ command: ["sh", "-c", "echo hi"] });
    expect(await sb.stdout.readText()).toBe("hi\n");
    await sb.terminate();
    expect(seen.map((s) => s.path)).toContain("/sbx.v1.SandboxService/CreateSandbox");
    expect(seen.every((s) => s.authorization === "Bearer web-token")).toBe(true);
  });

  it("a wrong token is an AuthenticationError", async () => {
    await using client = new SandboxClient({ endpoint: url, token: "wrong" });
    await expect(client.sandboxes.create()).rejects.toBeInstanceOf(AuthenticationError);
  });

  // A browser has six HTTP/1.1 connections per origin: a stream the client has stopped
  // reading must give its request up at once, not when the server next says something.
  it("a watch that is closed or left gives up its request", async () => {
    const signals = new Map<string, AbortSignal[]>();
    const recording: FetchFunction = (input, init) => {
      const path = new URL(input instanceof Request ? input.url : input).pathname;
      if (init?.signal) signals.set(path, [...(signals.get(path) ?? []), init.signal]);
      return fetch(input, init);
    };
    await using client = new SandboxClient({ endpoint: url, token: "web-token", fetch: recording });
    const sb = await client.sandboxes.create();
    await sb.filesystem.makeDirectory("/quiet");
    await sb.filesystem.makeDirectory("/once");
    const closed = sb.filesystem.watch("/quiet");
    await closed.ready;
    closed.close();
    const left = sb.filesystem.watch("/once");
    await left.ready;
    const iterating = (async () => {
      for await (const _ of left) break;
    })();
    await sb.filesystem.writeText("x", "/once/file");
    await iterating;
    const watches = () => signals.get("/sbx.v1.FilesystemService/Watch") ?? [];
    expect(watches()).toHaveLength(2);
    // Nothing more happens in /quiet and /once: only the client can end these requests.
    await vi.waitFor(() => expect(watches().map((s) => s.aborted)).toEqual([true, true]), { timeout: 10_000 });
    await sb.terminate();
  });

  it("hands out sandboxes without local file methods", async () => {
    await using client = new SandboxClient({ endpoint: url, token: "web-token" });
    const sb = await client.sandboxes.create();
    expect("copyFromLocal" in sb.filesystem).toBe(false);
    expect("copyToLocal" in sb.filesystem).toBe(false);
    // Nor in the types: tsc (the typecheck task) fails if these lines stop being errors.
    if (false as boolean) {
      // @ts-expect-error a browser has no local files
      await sb.filesystem.copyFromLocal("/a", "/b");
      // @ts-expect-error a browser has no local files
      await sb.filesystem.copyToLocal("/a", "/b");
    }
    await sb.terminate();
  });
});

describe("conformance over fetch (Node's), against the fake on a port", () => {
  const fake = createFakeServer({ token: "conformance-token" });
  let url = "";
  let close: () => Promise<void> = async () => {};
  beforeAll(async () => {
    ({ url, close } = await fake.listen());
  });
  afterAll(async () => {
    await close();
    await fake.close();
  });
  defineConformanceSuite(
    { describe, it, beforeAll, afterAll },
    {
      name: "web → fake (fetch)",
      sdk,
      makeClient: () => new sdk.SandboxClient({ endpoint: url, token: "conformance-token" }),
      fake,
      endpoint: () => ({ url, token: "conformance-token" }),
      knownDifferences: FAKE_KNOWN_DIFFERENCES,
    },
  );
});
