/**
 * sb.connect and sb.tunnel against the fake: over a real port (the tunnel route, the same
 * code the sbx server mounts) and in-process (`fake.transport`, its own port dialer).
 */
import { connect as netConnect, type Socket } from "node:net";
import type { PortConnection } from "@sbx/core";
import { layer as transportLayer } from "@sbx/core/effect";
import { sourceOrEcho } from "@sbx/test-fixtures/port-apps";
import { TcpProxy } from "@sbx/test-fixtures/tcp-proxy";
import { createFakeServer, type FakeServer } from "@sbx/testing";
import * as Effect from "effect/Effect";
import { afterEach, describe, expect, it } from "vitest";
import { Network, layer as nodeLayer } from "./effect.js";
import {
  AuthenticationError,
  FailedPreconditionError,
  NotFoundError,
  SandboxClient,
  TunnelError,
  UnsupportedError,
} from "./index.js";
import { createNodeTransport } from "./transport.js";

const TOKEN = "connect-secret";
const ECHO = 7000;
const SINK = 7001;

/** Echoes every byte back; ends its side when the client ends its own. */
function echo(fake: FakeServer) {
  fake.onPortConnection(ECHO, async ({ readable, writable }) => {
    await readable.pipeTo(writable);
  });
}

async function readAll(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let length = 0;
  const reader = readable.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) {
    parts.push(next.value);
    length += next.value.byteLength;
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

function pattern(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 11)) & 0xff;
  return bytes;
}

async function writeAll(conn: PortConnection, bytes: Uint8Array, chunk = 256 * 1024): Promise<void> {
  const writer = conn.writable.getWriter();
  for (let at = 0; at < bytes.byteLength; at += chunk) await writer.write(bytes.subarray(at, at + chunk));
  await writer.close();
}

/** Sends `bytes` over a local TCP connection, ends its side, and resolves with all that came back. */
function localRoundTrip(port: number, bytes: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const socket: Socket = netConnect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => {
      socket.end(bytes);
    });
    const parts: Buffer[] = [];
    socket.on("data", (d: Buffer) => parts.push(d));
    socket.on("end", () => {
      socket.end();
      resolve(new Uint8Array(Buffer.concat(parts)));
    });
    socket.on("error", reject);
  });
}

type Target = {
  name: string;
  setup: (fake: FakeServer) => Promise<SandboxClient>;
  /** `Network.connect` (the Effect API) to any sandbox id, with `token`. */
  connectById: (fake: FakeServer, client: SandboxClient, id: string, port: number) => Promise<PortConnection>;
};

const targets: Target[] = [
  {
    name: "fake.listen() (a plain upgrade, Node's channel)",
    async setup(fake) {
      const { url } = await fake.listen();
      return new SandboxClient({ endpoint: url, token: TOKEN });
    },
    connectById: (_fake, client, id, port) =>
      Effect.runPromise(
        Network.connect(id, port).pipe(Effect.provide(nodeLayer({ endpoint: client.endpoint, token: TOKEN }))),
      ),
  },
  {
    // A transport of the user's own carries no channel: a WebSocket, as in browsers, Deno and Bun.
    name: "fake.listen() (a WebSocket)",
    async setup(fake) {
      const { url } = await fake.listen();
      return new SandboxClient({ transport: createNodeTransport(url), endpoint: url, token: TOKEN });
    },
    connectById: (_fake, client, id, port) =>
      Effect.runPromise(
        Network.connect(id, port).pipe(
          Effect.provide(
            transportLayer(createNodeTransport(client.endpoint), { endpoint: client.endpoint, token: TOKEN }),
          ),
        ),
      ),
  },
  {
    name: "in-process fake",
    setup: async (fake) => new SandboxClient({ transport: fake.transport, token: TOKEN }),
    connectById: (fake, _client, id, port) =>
      Effect.runPromise(
        Network.connect(id, port).pipe(Effect.provide(transportLayer(fake.transport, { token: TOKEN }))),
      ),
  },
];

describe.each(targets)("sb.connect — $name", ({ setup, connectById }) => {
  let fake: FakeServer;
  let client: SandboxClient;
  afterEach(async () => {
    await client?.close();
    await fake?.close();
  });
  const start = async () => {
    fake = createFakeServer({ token: TOKEN });
    echo(fake);
    client = await setup(fake);
    return client.sandboxes.create();
  };

  it("echoes 8 MiB both ways, with a half-close", async () => {
    const sb = await start();
    const conn = await sb.connect(ECHO);
    const sent = pattern(8 * 1024 * 1024);
    const [, received] = await Promise.all([writeAll(conn, sent), readAll(conn.readable)]);
    expect(received.byteLength).toBe(sent.byteLength);
    expect(Buffer.from(received).equals(Buffer.from(sent))).toBe(true);
  });

  it("an app's answer after the client's half-close still arrives", async () => {
    const sb = await start();
    fake.onPortConnection(SINK, async ({ readable, writable }) => {
      const got = await readAll(readable); // until the client's end
      const writer = writable.getWriter();
      await writer.write(new TextEncoder().encode(`got ${got.byteLength} bytes`));
      await writer.close();
    });
    const conn = await sb.connect(SINK);
    await writeAll(conn, pattern(100_000));
    expect(new TextDecoder().decode(await readAll(conn.readable))).toBe("got 100000 bytes");
  });

  it("a port nobody listens on is a TunnelError naming the port", async () => {
    const sb = await start();
    const error = await sb.connect(4321).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TunnelError);
    expect((error as TunnelError).port).toBe(4321);
    expect((error as Error).message).toContain("4321");
  });

  it("an unknown sandbox is NotFoundError; a terminated one FailedPreconditionError", async () => {
    const sb = await start();
    await expect(connectById(fake, client, "sb-nosuchsandbox", ECHO)).rejects.toBeInstanceOf(NotFoundError);
    const ok = await connectById(fake, client, sb.id, ECHO); // the Effect API reaches it too
    await ok.writable.close();
    await readAll(ok.readable);
    await sb.terminate();
    await expect(sb.connect(ECHO)).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  it("cancelling the readable closes the connection (the app's side ends)", async () => {
    const sb = await start();
    let appEnded!: () => void;
    const ended = new Promise<void>((resolve) => {
      appEnded = resolve;
    });
    fake.onPortConnection(SINK, async ({ readable }) => {
      await readAll(readable).catch(() => {});
      appEnded();
    });
    const conn = await sb.connect(SINK);
    await conn.readable.cancel();
    await ended;
  });
});

describe("sb.connect over a port — auth", () => {
  it("a wrong token is an AuthenticationError", async () => {
    const fake = createFakeServer({ token: TOKEN });
    echo(fake);
    const { url } = await fake.listen();
    try {
      await using good = new SandboxClient({ endpoint: url, token: TOKEN });
      const sb = await good.sandboxes.create();
      const wrong = Effect.runPromise(
        Network.connect(sb.id, ECHO).pipe(Effect.provide(nodeLayer({ endpoint: url, token: "wrong" }))),
      );
      await expect(wrong).rejects.toBeInstanceOf(AuthenticationError);
      const none = Effect.runPromise(Network.connect(sb.id, ECHO).pipe(Effect.provide(nodeLayer({ endpoint: url }))));
      await expect(none).rejects.toBeInstanceOf(AuthenticationError);
    } finally {
      await fake.close();
    }
  });

  it("the in-process fake cannot connect to an onPort (HTTP) handler: UnsupportedError", async () => {
    const fake = createFakeServer();
    fake.onPort(8080, () => new Response("hi"));
    await using client = new SandboxClient({ transport: fake.transport });
    const sb = await client.sandboxes.create();
    await expect(sb.connect(8080)).rejects.toBeInstanceOf(UnsupportedError);
    await fake.close();
  });
});

describe("sb.tunnel (Node)", () => {
  let fake: FakeServer;
  let proxy: TcpProxy | undefined;
  afterEach(async () => {
    await proxy?.stop();
    proxy = undefined;
    await fake?.close();
  });

  /** The fake behind a TCP proxy (which counts, cuts and restarts connections), and a client of it. */
  const behindProxy = async () => {
    fake = createFakeServer({ token: TOKEN });
    echo(fake);
    const { url } = await fake.listen();
    proxy = new TcpProxy(url);
    const client = new SandboxClient({ endpoint: await proxy.start(), token: TOKEN });
    return { client, sb: await client.sandboxes.create(), proxy };
  };

  it("100 connections at once each carry their own 256 KiB both ways, byte for byte, over one connection to the server", async () => {
    const { client, sb, proxy } = await behindProxy();
    await using _client = client;
    await using t = await sb.tunnel(ECHO);
    expect(t.localPort).toBeGreaterThan(0);
    const payloads = Array.from({ length: 100 }, (_, i) => pattern(256 * 1024 + i).map((b) => b ^ i));
    const results = await Promise.all(payloads.map((p) => localRoundTrip(t.localPort, p)));
    results.forEach((r, i) => {
      expect(r.byteLength, `connection ${i}`).toBe(payloads[i]?.byteLength);
      expect(Buffer.from(r).equals(Buffer.from(payloads[i] as Uint8Array)), `connection ${i}`).toBe(true);
    });
    expect(proxy.count(`/sbx.v1/sandboxes/${sb.id}/tunnel`)).toBe(1);
  });

  it("a connection whose reader does not read holds up no other connection of the tunnel", async () => {
    fake = createFakeServer();
    // The app answers "S" with an endless stream and echoes anything else.
    fake.onPortConnection(ECHO, sourceOrEcho);
    const { url } = await fake.listen();
    await using client = new SandboxClient({ endpoint: url });
    const sb = await client.sandboxes.create();
    await using t = await sb.tunnel(ECHO);
    // A reader that never reads: its connection fills its window and its socket's buffers.
    const stalled = netConnect({ port: t.localPort, host: "127.0.0.1" });
    stalled.on("error", () => {});
    stalled.write("S");
    stalled.pause();
    await new Promise<void>((resolve) => stalled.once("readable", () => resolve()));
    const payload = pattern(16 * 1024 * 1024);
    payload[0] = 0x45;
    const echoed = await localRoundTrip(t.localPort, payload);
    expect(Buffer.from(echoed).equals(Buffer.from(payload))).toBe(true);
    stalled.destroy();
  });

  it("a dropped server connection resets the connections open through it; the tunnel reconnects for new ones", async () => {
    const { client, sb, proxy } = await behindProxy();
    await using _client = client;
    await using t = await sb.tunnel(ECHO);
    // A connection in the middle of its bytes when the connection to the server is cut.
    const local = netConnect({ port: t.localPort, host: "127.0.0.1", allowHalfOpen: true });
    const ended = new Promise<string>((resolve) => {
      local.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
      local.on("end", () => resolve("clean end"));
    });
    local.write("first half");
    await new Promise<void>((resolve) => local.once("data", () => resolve()));
    proxy.cut();
    expect(await ended).toBe("ECONNRESET");
    // The server is reached again: new connections work.
    const after = new TextEncoder().encode("after the drop");
    expect(new TextDecoder().decode(await localRoundTrip(t.localPort, after))).toBe("after the drop");
    // The server away for a while: a connection meanwhile is reset; once it is back, they work.
    await proxy.stop();
    await expect(localRoundTrip(t.localPort, after)).rejects.toMatchObject({ code: "ECONNRESET" });
    await proxy.start();
    expect(new TextDecoder().decode(await localRoundTrip(t.localPort, after))).toBe("after the drop");
    expect(proxy.count(`/sbx.v1/sandboxes/${sb.id}/tunnel`)).toBeGreaterThanOrEqual(2);
  });

  it("new connections work after the server's listener restarts", async () => {
    fake = createFakeServer({ token: TOKEN });
    echo(fake);
    const first = await fake.listen();
    await using client = new SandboxClient({ endpoint: first.url, token: TOKEN });
    const sb = await client.sandboxes.create();
    await using t = await sb.tunnel(ECHO, { localPort: 0 });
    const text = (s: string) => new TextEncoder().encode(s);
    expect(new TextDecoder().decode(await localRoundTrip(t.localPort, text("before")))).toBe("before");
    await first.close();
    await fake.listen({ port: first.port });
    expect(new TextDecoder().decode(await localRoundTrip(t.localPort, text("after")))).toBe("after");
  });

  it("close() stops listening and ends open connections", async () => {
    fake = createFakeServer();
    echo(fake);
    await using client = new SandboxClient({ transport: fake.transport });
    const sb = await client.sandboxes.create();
    const t = await sb.tunnel(ECHO);
    const socket = netConnect({ port: t.localPort, host: "127.0.0.1" });
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.on("error", () => {});
    socket.write("hello");
    await new Promise<void>((resolve) => socket.once("data", () => resolve()));
    await t.close();
    await closed;
    const refused = await new Promise<string>((resolve) => {
      const again = netConnect({ port: t.localPort, host: "127.0.0.1" });
      again.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      again.on("connect", () => {
        again.destroy();
        resolve("connected");
      });
    });
    expect(refused).toBe("ECONNREFUSED");
  });

  it.each([
    ["in-process", false],
    ["over a port", true],
  ])("a local connection to a port nobody listens on is reset (%s)", async (_name, listening) => {
    fake = createFakeServer();
    const client = listening
      ? new SandboxClient({ endpoint: (await fake.listen()).url })
      : new SandboxClient({ transport: fake.transport });
    await using _client = client;
    const sb = await client.sandboxes.create();
    await using t = await sb.tunnel(4444);
    await expect(localRoundTrip(t.localPort, new TextEncoder().encode("x"))).rejects.toMatchObject({
      code: "ECONNRESET",
    });
  });

  it("a tunnel to a sandbox that has finished fails when it opens", async () => {
    fake = createFakeServer({ token: TOKEN });
    const { url } = await fake.listen();
    await using client = new SandboxClient({ endpoint: url, token: TOKEN });
    const sb = await client.sandboxes.create();
    await sb.terminate({ wait: true });
    await expect(sb.tunnel(ECHO)).rejects.toBeInstanceOf(FailedPreconditionError);
  });
});

describe("refused upgrades on the API port", () => {
  let fake: FakeServer | undefined;
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  it("never count as requests in flight: many without a token do not shut out a client that has one", async () => {
    fake = createFakeServer({ token: TOKEN });
    const listener = await fake.listen({ connections: { maxConnections: 10 } });
    const { hostname, port } = new URL(listener.url);
    const upgrade = (path: string) =>
      `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sbx.v1\r\n\r\n";
    // Clients that never close: no token, and a path no sandbox port has.
    const held: Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const socket = netConnect({ host: hostname, port: Number(port) });
      socket.on("error", () => {});
      socket.on("data", () => {});
      socket.write(upgrade(i % 2 === 0 ? "/sbx.v1/sandboxes/sb-x/ports/7000/connect" : "/sbx.v1/sandboxes/nonsense"));
      held.push(socket);
    }
    await new Promise((r) => setTimeout(r, 300));
    try {
      await using client = new SandboxClient({ endpoint: listener.url, token: TOKEN, maxRetries: 0 });
      await using sb = await client.sandboxes.create();
      expect(sb.id).toMatch(/\S/);
      // And the refused sockets are closed by the server within moments.
      await new Promise((r) => setTimeout(r, 1500));
      expect(held.filter((s) => !s.destroyed && !s.readableEnded)).toEqual([]);
    } finally {
      for (const socket of held) socket.destroy();
    }
  });
});
