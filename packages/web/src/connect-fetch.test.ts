// @sbx/web's own Connect-over-fetch client: the wire details the conformance suite does not
// reach (envelopes split anywhere, deadlines, errors that are not Connect's, streams that end
// early, compression), against the fake on a port under Node's fetch.
import { createConnectTransport } from "@connectrpc/connect-web";
import { createFakeServer } from "@sbx/testing";
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { layer, Processes, Sandboxes } from "./effect.js";
import {
  ConnectionError,
  createWebTransport,
  type FetchFunction,
  InternalError,
  InvalidError,
  NotFoundError,
  QuotaExceededError,
  SandboxClient,
  SandboxFilesystemNotFoundError,
  TimeoutError,
  UnsupportedError,
} from "./index.js";

const TOKEN = "wire-token";
const fake = createFakeServer({ token: TOKEN });
let url = "";
let close: () => Promise<void> = async () => {};
beforeAll(async () => {
  ({ url, close } = await fake.listen());
});
afterAll(async () => {
  await close();
  await fake.close();
});

const pathOf = (input: RequestInfo | URL) => new URL(input instanceof Request ? input.url : input).pathname;

/** A fetch whose answers arrive in pieces of the sizes `sizes` gives (cycled). */
function rechunking(sizes: number[]): FetchFunction {
  return async (input, init) => {
    const response = await fetch(input, init);
    if (!response.body) return response;
    const bytes = new Uint8Array(await response.arrayBuffer());
    let at = 0;
    let turn = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(sink) {
        if (at >= bytes.byteLength) return sink.close();
        const size = sizes[turn++ % sizes.length] as number;
        sink.enqueue(bytes.slice(at, at + size));
        at += size;
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
}

describe("Connect over fetch", () => {
  it("reads streamed messages whatever pieces the body arrives in", async () => {
    for (const sizes of [[1], [2, 7, 3], [4096], [5, 1, 100_000]]) {
      await using client = new SandboxClient({ endpoint: url, token: TOKEN, rawHttp: false, fetch: rechunking(sizes) });
      const sb = await client.sandboxes.create();
      const data = new Uint8Array(300_000).map((_, i) => (i * 7) % 251);
      await sb.filesystem.writeBytes(data, "/blob");
      expect(await sb.filesystem.readBytes("/blob")).toEqual(data);
      const p = await sb.exec(["sh", "-c", "echo one; echo two >&2"]);
      expect(await p.stdout.readText()).toBe("one\n");
      expect(await p.stderr.readText()).toBe("two\n");
      await sb.terminate();
    }
  });

  it("sends the call's deadline, and past it fails with TimeoutError", async () => {
    const timeouts: (string | null)[] = [];
    const slow: FetchFunction = async (input, init) => {
      timeouts.push(new Headers(init?.headers).get("connect-timeout-ms"));
      if (pathOf(input).endsWith("/GetSandbox")) await new Promise((r) => setTimeout(r, 2_000));
      return fetch(input, init);
    };
    await using client = new SandboxClient({ endpoint: url, token: TOKEN, fetch: slow, timeoutMs: 300 });
    const sb = await client.sandboxes.create();
    expect(Number(timeouts[0])).toBeGreaterThan(0);
    expect(Number(timeouts[0])).toBeLessThanOrEqual(300);
    await expect(client.sandboxes.fromId(sb.id)).rejects.toBeInstanceOf(TimeoutError);
  });

  it("turns Connect errors into typed errors, with their details", async () => {
    await using client = new SandboxClient({ endpoint: url, token: TOKEN });
    await expect(client.sandboxes.fromId("sb-missing")).rejects.toBeInstanceOf(NotFoundError);
    const sb = await client.sandboxes.create();
    const missing = sb.filesystem.readText("/no/such/file");
    await expect(missing).rejects.toBeInstanceOf(SandboxFilesystemNotFoundError);
    await expect(missing).rejects.toThrow("/no/such/file");
    // A RetryInfo detail is honoured: the quota error is retried, then succeeds.
    fake.failNext("getSandbox", { code: "resource_exhausted", retryAfterMs: 10 });
    expect((await client.sandboxes.fromId(sb.id)).id).toBe(sb.id);
    fake.failNext("getSandbox", { code: "resource_exhausted", times: 100 });
    await expect(client.sandboxes.fromId(sb.id)).rejects.toBeInstanceOf(QuotaExceededError);
    fake.clearFaults();
    await sb.terminate();
  });

  it("retries answers that are not Connect's by their HTTP status (a proxy's 503), not a 404", async () => {
    let failures = 2;
    const proxy: FetchFunction = async (input, init) => {
      if (pathOf(input).endsWith("/GetSandbox") && failures-- > 0) {
        return new Response("<html>bad gateway</html>", { status: 503, headers: { "content-type": "text/html" } });
      }
      return fetch(input, init);
    };
    await using client = new SandboxClient({ endpoint: url, token: TOKEN, fetch: proxy });
    const sb = await client.sandboxes.create();
    expect((await client.sandboxes.fromId(sb.id)).id).toBe(sb.id);
    expect(failures).toBeLessThan(0);

    const wrongPath: FetchFunction = (input, init) =>
      pathOf(input).endsWith("/GetSandbox") ? Promise.resolve(new Response("no", { status: 404 })) : fetch(input, init);
    await using other = new SandboxClient({ endpoint: url, token: TOKEN, fetch: wrongPath, maxRetries: 1 });
    // A bare 404 is Connect's UNIMPLEMENTED: not retried, and an UnsupportedError.
    await expect(other.sandboxes.fromId(sb.id)).rejects.toBeInstanceOf(UnsupportedError);
    await sb.terminate();
  });

  it("resumes a stream whose body ends before its end-of-stream message", async () => {
    let cut = 1;
    const cutting: FetchFunction = async (input, init) => {
      const response = await fetch(input, init);
      if (!pathOf(input).endsWith("/ReadFile") || cut-- <= 0 || !response.body) return response;
      // Only the first 1000 bytes of the answer, then a clean end: no end-of-stream envelope.
      const bytes = new Uint8Array(await response.arrayBuffer()).slice(0, 1000);
      return new Response(bytes, { status: 200, headers: response.headers });
    };
    await using client = new SandboxClient({ endpoint: url, token: TOKEN, rawHttp: false, fetch: cutting });
    const sb = await client.sandboxes.create();
    const data = new Uint8Array(200_000).map((_, i) => i % 253);
    await sb.filesystem.writeBytes(data, "/resumed");
    expect(await sb.filesystem.readBytes("/resumed")).toEqual(data);
    expect(cut).toBeLessThan(0);
    await sb.terminate();
  });

  it("refuses a compressed message it did not ask for", async () => {
    const compressing: FetchFunction = async (input, init) => {
      const response = await fetch(input, init);
      if (!pathOf(input).endsWith("/ReadFile")) return response;
      const bytes = new Uint8Array(await response.arrayBuffer());
      bytes[0] = (bytes[0] as number) | 1;
      return new Response(bytes, { status: 200, headers: response.headers });
    };
    await using client = new SandboxClient({
      endpoint: url,
      token: TOKEN,
      rawHttp: false,
      fetch: compressing,
      maxRetries: 0,
    });
    const sb = await client.sandboxes.create();
    await sb.filesystem.writeText("x", "/c");
    await expect(sb.filesystem.readText("/c")).rejects.toBeInstanceOf(InternalError);
    await sb.terminate();
  });

  it("a refused connection is a ConnectionError", async () => {
    await using client = new SandboxClient({ endpoint: "http://127.0.0.1:9", token: TOKEN, maxRetries: 1 });
    await expect(client.sandboxes.create()).rejects.toBeInstanceOf(ConnectionError);
  });
});

describe("@sbx/web/effect", () => {
  it("runs the Effect API over the same clients", async () => {
    const program = Effect.gen(function* () {
      const sb = yield* Sandboxes.create({});
      const p = yield* Processes.exec(sb.id, ["sh", "-c", "echo from-effect"]);
      const text = yield* Stream.mkString(
        Processes.outputText({ sandboxId: sb.id, processId: p.processId, stream: "stdout" }),
      );
      yield* Sandboxes.terminate(sb.id);
      return text;
    });
    expect(await Effect.runPromise(program.pipe(Effect.provide(layer({ endpoint: url, token: TOKEN }))))).toBe(
      "from-effect\n",
    );
  });
});

describe("{ transport } in @sbx/web", () => {
  it("takes fake.transport (it carries its clients)", async () => {
    await using client = new SandboxClient({ transport: fake.transport, token: TOKEN });
    const sb = await client.sandboxes.create({ command: ["sh", "-c", "echo in-process"] });
    expect(await sb.stdout.readText()).toBe("in-process\n");
    await sb.terminate();
  });

  it("takes createWebTransport's transport", async () => {
    await using client = new SandboxClient({ transport: createWebTransport(url), token: TOKEN });
    const sb = await client.sandboxes.create({ command: ["sh", "-c", "echo connect-web"] });
    expect(await sb.stdout.readText()).toBe("connect-web\n");
    await sb.terminate();
  });

  it("refuses a bare Connect transport with a clear InvalidError", () => {
    const bare = createConnectTransport({ baseUrl: url });
    expect(() => new SandboxClient({ transport: bare })).toThrow(InvalidError);
    expect(() => new SandboxClient({ transport: bare })).toThrow(/withConnectClients/);
  });
});
