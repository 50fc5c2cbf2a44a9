// Unary calls straight over HTTP/2 (http2-unary.ts): answers and failures read as Connect's own
// transport reads them, and the deadline and the caller's signal hold from the start of a call,
// while its connection is still being made too.
import { createServer as createHttp2Server, type Http2Server } from "node:http2";
import { createServer as createTcpServer, type Server, type Socket } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { SandboxService } from "@sbx/proto";
import { createFakeServer } from "@sbx/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createNodeTransport } from "./transport.js";

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

async function listening(server: Server | Http2Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** A server that takes connections and never says a word. */
async function silentServer(): Promise<string> {
  const sockets: Socket[] = [];
  const server = createTcpServer((socket) => sockets.push(socket));
  closers.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return listening(server);
}

const failureOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error as ConnectError,
  );

describe("unary calls over HTTP/2", () => {
  it("answers, typed failures and their messages come through as from Connect's transport", async () => {
    const fake = createFakeServer({ token: "t" });
    const listener = await fake.listen();
    closers.push(() => fake.close());
    const client = createClient(SandboxService, createNodeTransport(listener.url));
    const headers = { authorization: "Bearer t" };
    const created = await client.createSandbox({ requestId: "r1", spec: { app: "a" } }, { headers });
    const sandboxId = created.sandbox?.id ?? "";
    let contentType: string | null = null;
    const got = await client.getSandbox(
      { sandboxId },
      { headers, timeoutMs: 5_000, onHeader: (h) => (contentType = h.get("content-type")) },
    );
    expect(got.sandbox?.spec?.app).toBe("a");
    expect(contentType).toBe("application/proto");
    const missing = await failureOf(client.getSandbox({ sandboxId: "sb-nothere" }, { headers }));
    expect(missing).toBeInstanceOf(ConnectError);
    expect(missing?.code).toBe(Code.NotFound);
    expect(missing?.rawMessage).toContain("sb-nothere");
    const refused = await failureOf(client.getSandbox({ sandboxId }, { headers: { authorization: "Bearer x" } }));
    expect(refused?.code).toBe(Code.Unauthenticated);
  });

  it("an answer that is not a Connect answer is a failure that says so", async () => {
    const server = createHttp2Server((req, res) => {
      req.resume();
      if (req.url?.endsWith("/GetSandbox")) res.writeHead(200, { "content-type": "text/html" }).end("<p>hi</p>");
      else res.writeHead(404, { "content-type": "text/html" }).end("<h1>Not Found</h1>");
    });
    closers.push(() => new Promise((resolve) => server.close(resolve)));
    const client = createClient(SandboxService, createNodeTransport(await listening(server)));
    const html = await failureOf(client.getSandbox({ sandboxId: "sb-1" }));
    expect(html?.rawMessage).toBe("unsupported content type text/html");
    const notFound = await failureOf(client.listSandboxes({}));
    expect(notFound?.rawMessage).toBe("HTTP 404");
    expect(notFound?.code).toBe(Code.Unimplemented);
  });

  it("the deadline ends a call whose server never answers, even before the connection is made", async () => {
    const client = createClient(SandboxService, createNodeTransport(await silentServer()));
    const late = await failureOf(client.getSandbox({ sandboxId: "sb-1" }, { timeoutMs: 200 }));
    expect(late?.code).toBe(Code.DeadlineExceeded);
  });

  it("the caller's signal cancels a call in flight", async () => {
    const client = createClient(SandboxService, createNodeTransport(await silentServer()));
    const controller = new AbortController();
    const call = failureOf(client.getSandbox({ sandboxId: "sb-1" }, { signal: controller.signal }));
    setTimeout(() => controller.abort(), 100);
    expect((await call)?.code).toBe(Code.Canceled);
  });
});
