// Bad input over the wire (raw Connect/gRPC clients and plain fetch, not the SDK): the right
// status codes, and the server keeps serving. Also auth and CORS on the shared port.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { ProcessService, SandboxService } from "@sbx/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./images/test-support/registry.js";
import { realServerAvailable, startTestServer } from "./test-support.js";

const available = await realServerAvailable();

async function codeOf(promise: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await promise;
    return "ok";
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

if (available) {
  describe("the wire", () => {
    let server: Awaited<ReturnType<typeof startTestServer>>;
    const headers = { authorization: "Bearer test-token" };
    let sandboxes: ReturnType<typeof createClient<typeof SandboxService>>;
    let processes: ReturnType<typeof createClient<typeof ProcessService>>;
    let sandboxId = "";

    beforeAll(async () => {
      server = await startTestServer();
      const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" });
      sandboxes = createClient(SandboxService, transport);
      processes = createClient(ProcessService, transport);
      const created = await sandboxes.createSandbox({ requestId: "wire-1", spec: { app: "wire" } }, { headers });
      sandboxId = created.sandbox?.id ?? "";
    });
    afterAll(async () => {
      await server.close();
      server.removeData();
    });

    it("rejects a missing or wrong token with UNAUTHENTICATED", async () => {
      expect(await codeOf(sandboxes.getSandbox({ sandboxId }))).toBe(Code.Unauthenticated);
      expect(await codeOf(sandboxes.getSandbox({ sandboxId }, { headers: { authorization: "Bearer nope" } }))).toBe(
        Code.Unauthenticated,
      );
      expect(await codeOf(sandboxes.getSandbox({ sandboxId }, { headers: { authorization: "test-token" } }))).toBe(
        Code.Unauthenticated,
      );
    });

    it("gives the right codes for bad input", async () => {
      const nobodyServes = await freePort();
      const cases: [string, Promise<unknown>, Code][] = [
        ["unknown sandbox", sandboxes.getSandbox({ sandboxId: "sb-nope" }, { headers }), Code.NotFound],
        ["unknown process", processes.getProcess({ sandboxId, processId: "nope" }, { headers }), Code.NotFound],
        ["bad name", sandboxes.createSandbox({ spec: { name: "bad name" } }, { headers }), Code.InvalidArgument],
        ["bad app", sandboxes.createSandbox({ spec: { app: "../x" } }, { headers }), Code.InvalidArgument],
        ["relative workdir", sandboxes.createSandbox({ spec: { workdir: "tmp" } }, { headers }), Code.InvalidArgument],
        [
          "absurd timeout",
          sandboxes.createSandbox({ spec: { timeoutMs: 10n ** 15n } }, { headers }),
          Code.InvalidArgument,
        ],
        [
          "oversized args",
          processes.startProcess(
            { sandboxId, processId: "big", spec: { argv: ["echo", "x".repeat(70_000)] } },
            { headers },
          ),
          Code.InvalidArgument,
        ],
        [
          "empty argv",
          processes.startProcess({ sandboxId, processId: "e", spec: { argv: [] } }, { headers }),
          Code.InvalidArgument,
        ],
        [
          "bad process id",
          processes.startProcess({ sandboxId, processId: "../x", spec: { argv: ["true"] } }, { headers }),
          Code.InvalidArgument,
        ],
        [
          "bad signal",
          processes.signalProcess({ sandboxId, processId: "entrypoint", signal: 99 }, { headers }),
          Code.InvalidArgument,
        ],
        [
          "too many tags",
          sandboxes.setTags(
            { sandboxId, tags: Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`k${i}`, "v"])) },
            { headers },
          ),
          Code.InvalidArgument,
        ],
        [
          "malformed image",
          sandboxes.createSandbox({ spec: { image: "Ubuntu:99" } }, { headers }),
          Code.InvalidArgument,
        ],
        [
          "unknown image id",
          sandboxes.createSandbox({ spec: { image: `im-${"0".repeat(20)}` } }, { headers }),
          Code.NotFound,
        ],
        // A reference the server pulls, from a registry on loopback that nobody serves.
        [
          "registry down",
          sandboxes.createSandbox({ spec: { image: `127.0.0.1:${nobodyServes}/sbx/gone:1` } }, { headers }),
          Code.Unavailable,
        ],
        ["port out of range", sandboxes.createSandbox({ spec: { ports: [70000] } }, { headers }), Code.InvalidArgument],
        ["bad cursor", sandboxes.listSandboxes({ cursor: "%%%" }, { headers }), Code.InvalidArgument],
      ];
      // All sent at once, answered in any order: each failure is handled when it comes.
      for (const [, call] of cases) call.catch(() => {});
      for (const [what, call, code] of cases) expect(await codeOf(call), what).toBe(code);
    });

    it("stdin writes are offset-idempotent over the wire", async () => {
      await processes.startProcess({ sandboxId, processId: "cat-1", spec: { argv: ["cat"] } }, { headers });
      const data = new TextEncoder().encode("abc");
      const w = (offset: bigint, bytes: Uint8Array, eof = false) =>
        processes.writeStdin({ sandboxId, processId: "cat-1", offset, data: bytes, eof }, { headers });
      expect((await w(0n, data)).committedOffset).toBe(3n);
      expect((await w(0n, data)).committedOffset).toBe(3n); // a retry: applied once
      expect(await codeOf(w(10n, data))).toBe(Code.FailedPrecondition); // a gap
      expect((await w(1n, new TextEncoder().encode("bcd"), true)).committedOffset).toBe(4n);
      let out = "";
      for await (const m of processes.readOutput(
        { sandboxId, processId: "cat-1", stream: 1, offset: 0n },
        { headers },
      )) {
        out += new TextDecoder().decode(m.data);
      }
      expect(out).toBe("abcd");
    });

    it("keeps serving over gRPC (HTTP/2) after all that, and answers CORS preflights", async () => {
      const grpc = createClient(SandboxService, createGrpcTransport({ baseUrl: server.url }));
      const r = await grpc.getSandbox({ sandboxId }, { headers });
      expect(r.sandbox?.id).toBe(sandboxId);
      const preflight = await fetch(`${server.url}/sbx.v1.SandboxService/GetSandbox`, {
        method: "OPTIONS",
        headers: {
          origin: "http://example.test",
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization,content-type",
        },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get("access-control-allow-origin")).toBe("*");
      expect(preflight.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
      const garbage = await fetch(`${server.url}/sbx.v1.SandboxService/GetSandbox`, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: "{not json",
      });
      expect(garbage.status).toBeGreaterThanOrEqual(400);
      const still = await sandboxes.getSandbox({ sandboxId }, { headers });
      expect(still.sandbox?.id).toBe(sandboxId);
    });
  });
}
