// Requests to a tunnel domain's sandbox names have a budget of their own on the fake's front
// door (the server's): a cap on all of them below the API's connection cap, caps per client
// address and per sandbox port, and a deadline for a request's body. Anonymous clients of an
// open tunnel can neither shut the API out nor hold a port's budget with bodies that never end.
import { connect as http2Connect } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { type Sandbox, SandboxClient } from "@sbx/core";
import type { ConnectionLimits } from "@sbx/server-kit/listen";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createFakeServer, type FakeServer } from "../index.js";

const DOMAIN = "sbx.test";
const SLOW = 8100;

interface Setup {
  readonly fake: FakeServer;
  readonly port: number;
  readonly boxes: Sandbox[];
  /** Request paths the app has seen the head of (so far). */
  readonly seen: Set<string>;
  /** Resolves once the app has seen `path`. */
  readonly appSaw: (path: string) => Promise<void>;
}

let running: FakeServer | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

/**
 * A fake with a tunnel domain, `boxes` sandboxes exposing SLOW, and an app there that takes a
 * request's head and never answers (it keeps reading its body, however slowly it comes); a
 * WebSocket upgrade it answers with a 101 and then holds.
 */
async function setUp(connections: ConnectionLimits, boxes = 1): Promise<Setup> {
  const fake = createFakeServer({ tunnelDomain: DOMAIN, tunnelScheme: "http" });
  running = fake;
  const { port } = await fake.listen({ connections });
  const seen = new Set<string>();
  const waiting = new Map<string, () => void>();
  fake.onPortConnection(SLOW, async (connection) => {
    const writer = connection.writable.getWriter();
    let head = "";
    const reader = connection.readable.getReader();
    for (;;) {
      const { value: chunk, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }));
      if (done) return;
      if (head.includes("\r\n\r\n")) continue;
      head += Buffer.from(chunk).toString("latin1");
      if (!head.includes("\r\n\r\n")) continue;
      const path = head.split(" ")[1] ?? "";
      seen.add(path);
      waiting.get(path)?.();
      if (/^upgrade: websocket$/im.test(head)) {
        const key = /^sec-websocket-key: (.*)$/im.exec(head)?.[1]?.trim() ?? "";
        const { createHash } = await import("node:crypto");
        const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
        await writer.write(
          Buffer.from(
            `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`,
          ),
        );
      }
    }
  });
  const client = new SandboxClient({ transport: fake.transport });
  const made: Sandbox[] = [];
  for (let i = 0; i < boxes; i++) made.push(await client.sandboxes.create({ ports: [SLOW] }));
  const appSaw = (path: string) =>
    seen.has(path) ? Promise.resolve() : new Promise<void>((resolve) => waiting.set(path, resolve));
  return { fake, port, boxes: made, seen, appSaw };
}

const host = (id: string) => `${SLOW}-${id}.${DOMAIN}`;

/** A connection that sent a POST whose body (of 100,000 bytes) has only its first byte. */
interface SlowPost {
  readonly socket: Socket;
  /** What came back so far. */
  readonly answer: () => string;
  /** Resolves with all that came back once the server closed the connection. */
  readonly closed: Promise<string>;
}

function slowPost(port: number, name: string, path: string, localAddress = "127.0.0.1"): SlowPost {
  const socket = netConnect({ port, host: "127.0.0.1", localAddress });
  let got = "";
  socket.setEncoding("latin1");
  socket.on("data", (d: string) => {
    got += d;
  });
  socket.on("error", () => {});
  const closed = new Promise<string>((resolve) => socket.once("close", () => resolve(got)));
  socket.write(`POST ${path} HTTP/1.1\r\nHost: ${name}\r\nContent-Length: 100000\r\n\r\nx`);
  return { socket, answer: () => got, closed };
}

/** Sends a slow POST and waits until the app took it (let through) or the server answered it (refused). */
async function admittedOrRefused(setup: Setup, name: string, path: string, localAddress?: string) {
  const post = slowPost(setup.port, name, path, localAddress);
  const refused = new Promise<"refused">((resolve) => {
    post.socket.once("data", () => resolve("refused"));
    post.socket.once("close", () => resolve("refused"));
  });
  const outcome = await Promise.race([setup.appSaw(path).then(() => "admitted" as const), refused]);
  return { post, outcome };
}

/** An API call over a new HTTP/1.1 connection: its status line, or "" when the connection closed unanswered. */
function apiCall(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect(port, "127.0.0.1");
    let got = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      got += d;
    });
    socket.on("error", () => {});
    socket.on("close", () => resolve(got.split("\r\n")[0] ?? ""));
    socket.write(
      `POST /sbx.v1.ImageService/ListImages HTTP/1.1\r\nHost: ${DOMAIN}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}`,
    );
  });
}

describe("the budget of requests to a tunnel domain's names on the fake", () => {
  it("anonymous requests to an open tunnel that never end take at most half the connections: the API still answers", async () => {
    const setup = await setUp({ maxConnections: 20, maxSilentConnectionsPerAddress: 5 });
    const [box] = setup.boxes as [Sandbox];
    const outcomes: string[] = [];
    const posts: SlowPost[] = [];
    for (let i = 0; i < 20; i++) {
      const { post, outcome } = await admittedOrRefused(setup, host(box.id), `/slow/${i}`);
      posts.push(post);
      outcomes.push(outcome);
    }
    expect(await apiCall(setup.port)).toBe("HTTP/1.1 200 OK");
    expect(outcomes.filter((o) => o === "admitted")).toHaveLength(10);
    const refused = posts.filter((_, i) => outcomes[i] === "refused");
    for (const post of refused) expect(await post.closed).toMatch(/^HTTP\/1\.1 503 /);
    for (const post of posts) post.socket.destroy();
  });

  it("one client address and one sandbox port have caps of their own; WebSockets count", async () => {
    const setup = await setUp({ hosted: { maxRequestsPerTarget: 2, maxRequestsPerAddress: 3 } }, 3);
    const [a, b, c] = setup.boxes as [Sandbox, Sandbox, Sandbox];
    const held: SlowPost[] = [];
    const outcome = async (name: string, path: string, localAddress?: string) => {
      const result = await admittedOrRefused(setup, name, path, localAddress);
      held.push(result.post);
      return result.outcome;
    };
    expect(await outcome(host(a.id), "/a1")).toBe("admitted");
    expect(await outcome(host(a.id), "/a2")).toBe("admitted");
    expect(await outcome(host(a.id), "/a3")).toBe("refused"); // the port's cap
    expect(held.at(-1)?.answer()).toMatch(/^HTTP\/1\.1 503 /);
    expect(await outcome(host(b.id), "/b1")).toBe("admitted");
    expect(await outcome(host(c.id), "/c1")).toBe("refused"); // the address's cap
    expect(await outcome(host(c.id), "/c2", "127.0.0.2")).toBe("admitted"); // another address
    // A WebSocket holds its place until it closes.
    const ws = new WebSocket(`ws://127.0.0.1:${setup.port}/ws`, {
      headers: { host: host(c.id) },
      localAddress: "127.0.0.2",
    });
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    const second = new WebSocket(`ws://127.0.0.1:${setup.port}/ws2`, {
      headers: { host: host(c.id) },
      localAddress: "127.0.0.3",
    });
    const status = await new Promise<number>((resolve, reject) => {
      second.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      second.once("open", () => resolve(101));
      second.once("error", reject);
    });
    expect(status).toBe(503);
    ws.close();
    for (const post of held) post.socket.destroy();
  });

  it("a request whose body does not arrive in time is answered 408 and its connection closed (HTTP/1.1 and HTTP/2)", async () => {
    const setup = await setUp({ hosted: { requestTimeoutMs: 200 } });
    const [box] = setup.boxes as [Sandbox];
    const { post, outcome } = await admittedOrRefused(setup, host(box.id), "/late");
    expect(outcome).toBe("admitted");
    expect(await post.closed).toMatch(/^HTTP\/1\.1 408 /);
    const session = http2Connect(`http://127.0.0.1:${setup.port}`);
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const stream = session.request(
          { ":method": "POST", ":path": "/late2", ":authority": host(box.id), "content-length": "100000" },
          { endStream: false },
        );
        stream.on("response", (headers) => resolve(Number(headers[":status"])));
        stream.on("error", reject);
        stream.write("x");
      });
      expect(status).toBe(408);
    } finally {
      session.destroy();
    }
  });
});
