import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { ProcessService, type ReadOutputRequest, RetryInfoSchema, SandboxSchema, SandboxService } from "@sbx/proto";
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import { describe, expect, it } from "vitest";
import { resolveConfig } from "./config.js";
import { connectClients } from "./connect.js";
import { ConnectionError, InvalidError, QuotaExceededError, TimeoutError } from "./errors.js";
import { outputBytes, outputText } from "./output-stream.js";
import { connectionLayer, retryingStream } from "./rpc.js";
import { markTransient } from "./rpc-errors.js";
import { createSandbox, getSandbox } from "./sandbox-ops.js";

const sandbox = (id: string) => create(SandboxSchema, { id });

function harness(
  routes: Parameters<typeof createRouterTransport>[0],
  options: Parameters<typeof resolveConfig>[0] = {},
) {
  const layer = connectionLayer(connectClients(createRouterTransport(routes)), {
    ...resolveConfig(options),
    retryBaseMs: 5,
    retryMaxDelayMs: 20,
  });
  return <A, E>(effect: Effect.Effect<A, E, never> | Effect.Effect<A, E, import("./rpc.js").SbxConnection>) =>
    Effect.runPromise(
      Effect.result(Effect.provide(effect as Effect.Effect<A, E, import("./rpc.js").SbxConnection>, layer)),
    );
}

describe("call: retries and deadlines", () => {
  it("retries transient failures and succeeds", async () => {
    let attempts = 0;
    const run = harness(({ service }) =>
      service(SandboxService, {
        getSandbox() {
          attempts++;
          if (attempts < 3) throw new ConnectError("busy", Code.Unavailable);
          return { sandbox: sandbox("sb-1") };
        },
      }),
    );
    const result = await run(getSandbox("sb-1"));
    expect(result._tag).toBe("Success");
    expect(attempts).toBe(3);
  });

  it("does not retry permanent errors", async () => {
    let attempts = 0;
    const run = harness(({ service }) =>
      service(SandboxService, {
        getSandbox() {
          attempts++;
          throw new ConnectError("bad id", Code.InvalidArgument);
        },
      }),
    );
    const result = await run(getSandbox("sb-1"));
    expect(result._tag === "Failure" && result.failure).toBeInstanceOf(InvalidError);
    expect(attempts).toBe(1);
  });

  it("gives up after maxRetries with ConnectionError", async () => {
    let attempts = 0;
    const run = harness(
      ({ service }) =>
        service(SandboxService, {
          getSandbox() {
            attempts++;
            throw new ConnectError("down", Code.Unavailable);
          },
        }),
      { maxRetries: 2 },
    );
    const result = await run(getSandbox("sb-1"));
    expect(result._tag === "Failure" && result.failure).toBeInstanceOf(ConnectionError);
    expect(attempts).toBe(3);
  });

  it("bounds the whole call by its deadline", async () => {
    const run = harness(
      ({ service }) =>
        service(SandboxService, {
          getSandbox() {
            throw new ConnectError("down", Code.Unavailable);
          },
        }),
      { timeoutMs: 150, maxRetries: 1_000 },
    );
    const result = await run(getSandbox("sb-1"));
    expect(result._tag === "Failure" && result.failure).toBeInstanceOf(TimeoutError);
  });

  it("ends a call whose answer never comes at its deadline, with TimeoutError", async () => {
    const run = harness(
      ({ service }) =>
        service(SandboxService, {
          getSandbox: () => new Promise<never>(() => {}),
        }),
      { timeoutMs: 150 },
    );
    const result = await run(getSandbox("sb-1"));
    expect(result._tag === "Failure" && result.failure).toBeInstanceOf(TimeoutError);
    expect(result._tag === "Failure" && result.failure.message).toBe("get sandbox sb-1 did not finish within 150 ms");
  });

  it("honours the server's retry delay and reuses the idempotency key", async () => {
    const requestIds: string[] = [];
    const times: number[] = [];
    const run = harness(({ service }) =>
      service(SandboxService, {
        createSandbox(request) {
          requestIds.push(request.requestId);
          times.push(Date.now());
          if (requestIds.length === 1) {
            throw new ConnectError("slow down", Code.ResourceExhausted, undefined, [
              { desc: RetryInfoSchema, value: { retryDelayMs: 200n } },
            ]);
          }
          if (requestIds.length === 2) throw new ConnectError("dropped", Code.Unavailable);
          return { sandbox: sandbox("sb-2") };
        },
      }),
    );
    const result = await run(createSandbox({}));
    expect(result._tag).toBe("Success");
    expect(requestIds).toHaveLength(3);
    expect(new Set(requestIds).size).toBe(1);
    expect((times[1] ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(190);
  });

  it("a quota error without a retry delay fails at once", async () => {
    let attempts = 0;
    const run = harness(({ service }) =>
      service(SandboxService, {
        getSandbox() {
          attempts++;
          throw new ConnectError("too many sandboxes", Code.ResourceExhausted);
        },
      }),
    );
    const result = await run(getSandbox("sb-1"));
    expect(result._tag === "Failure" && result.failure).toBeInstanceOf(QuotaExceededError);
    expect(attempts).toBe(1);
  });
});

describe("resumable output", () => {
  const text = "héllo wörld 😀 ".repeat(200);
  const bytes = new TextEncoder().encode(text);

  /** Serves `bytes` in 7-byte chunks; each of the first `cuts` attempts breaks off early. */
  function flakyOutput(cuts: number, how: "error" | "silent-end", overlap: boolean) {
    const offsets: number[] = [];
    const routes = ({ service }: Parameters<Parameters<typeof createRouterTransport>[0]>[0]) =>
      service(ProcessService, {
        async *readOutput(request: ReadOutputRequest) {
          const attempt = offsets.push(Number(request.offset));
          // Resume a little before the requested offset to check duplicates are dropped.
          let at = overlap && attempt > 1 ? Math.max(0, Number(request.offset) - 3) : Number(request.offset);
          let sent = 0;
          while (at < bytes.length) {
            if (attempt <= cuts && sent >= 50 + attempt * 13) {
              if (how === "error") throw new ConnectError("connection reset", Code.Unavailable);
              return;
            }
            const data = bytes.subarray(at, at + 7);
            yield { offset: BigInt(at), data };
            at += data.length;
            sent += data.length;
          }
          yield { offset: BigInt(bytes.length), data: new Uint8Array(0), eof: true };
        },
      });
    return { routes, offsets };
  }

  for (const how of ["error", "silent-end"] as const) {
    it(`resumes after a cut (${how}) with no byte lost or repeated`, async () => {
      const { routes, offsets } = flakyOutput(4, how, true);
      const run = harness(routes);
      const source = { sandboxId: "sb", processId: "p", stream: "stdout" } as const;
      const result = await run(Stream.runCollect(outputBytes(source)));
      expect(result._tag).toBe("Success");
      if (result._tag !== "Success") return;
      const joined = new Uint8Array(result.success.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of result.success) {
        joined.set(c, at);
        at += c.length;
      }
      expect(Buffer.from(joined).equals(Buffer.from(bytes))).toBe(true);
      expect(offsets).toHaveLength(5);
    });
  }

  it("decodes UTF-8 split across chunks and resumes", async () => {
    const { routes } = flakyOutput(3, "error", false);
    const run = harness(routes);
    const source = { sandboxId: "sb", processId: "p", stream: "stderr" } as const;
    const result = await run(Stream.mkString(outputText(source)));
    expect(result._tag === "Success" && result.success).toBe(text);
  });
});

describe("retryingStream", () => {
  const config = { ...resolveConfig({ maxRetries: 3 }), retryBaseMs: 1, retryMaxDelayMs: 2 };
  const transient = () => markTransient(new ConnectionError("cut"));

  it("retries a stream that keeps making progress however often it is cut", async () => {
    let attempts = 0;
    // Each attempt delivers one element, then is cut: 20 cuts, far more than maxRetries.
    const once = Stream.suspend(() => {
      attempts++;
      return attempts > 20 ? Stream.make(attempts) : Stream.concat(Stream.make(attempts), Stream.fail(transient()));
    });
    const all = await Effect.runPromise(Stream.runCollect(retryingStream(once, config)));
    expect(Array.from(all)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
  });

  it("gives up after maxRetries attempts in a row that deliver nothing, and at once on a permanent error", async () => {
    let attempts = 0;
    const stuck = Stream.suspend(() => {
      attempts++;
      return Stream.fail(transient());
    });
    const result = await Effect.runPromise(Effect.result(Stream.runCollect(retryingStream(stuck, config))));
    expect(result._tag === "Failure" && result.failure).toBeInstanceOf(ConnectionError);
    expect(attempts).toBe(4);
    attempts = 0;
    const permanent = Stream.suspend(() => {
      attempts++;
      return Stream.fail(new InvalidError("no"));
    });
    const failed = await Effect.runPromise(Effect.result(Stream.runCollect(retryingStream(permanent, config))));
    expect(failed._tag === "Failure" && failed.failure).toBeInstanceOf(InvalidError);
    expect(attempts).toBe(1);
  });
});
