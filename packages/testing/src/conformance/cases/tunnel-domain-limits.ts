/**
 * The front door's budget for requests to a tunnel domain's sandbox names: a cap on all of them
 * below the API's connection cap, caps per client address and per sandbox port, a deadline for a
 * request's body; and what counts as a silent connection. Anonymous clients of an open tunnel
 * can neither shut the API out nor hold a port's budget with bodies that never end. Each group
 * has a server of its own with the limits it needs; the "held-requests" app holds what it is
 * let through (its 200 and first chunk say so), so nothing here waits on a clock but the
 * body deadline the last case sets.
 */
import type { Sandbox } from "@sbx/core";
import { deepEqual, equal, match, rejects } from "../assert.js";
import { readHttpMessage, statusLine } from "../http-message.js";
import type { Harness, TestApi } from "../target.js";
import type { TunnelDomainServers, WireConnection } from "../tunnel-domain-target.js";
import { DOMAIN, HTTP_PORT, nameOf, RAW_PORT, T, useDomainServer } from "./tunnel-domain-env.js";

const ADMITTED = "HTTP/1.1 200 OK";

/** Whole answers off a keep-alive connection, one after another. */
class Answers {
  #pending = "";
  constructor(readonly connection: WireConnection) {}

  /** The next answer's status line, once the whole answer came. */
  async next(): Promise<string> {
    for (;;) {
      const answer = readHttpMessage(this.#pending);
      if (answer) {
        this.#pending = this.#pending.slice(answer.length);
        return answer.startLine;
      }
      const more = await this.connection.next();
      if (more === "") throw new Error(`the connection closed after ${JSON.stringify(this.#pending)}`);
      this.#pending += more;
    }
  }
}

export function tunnelDomainLimitCases(t: TestApi, h: Harness, servers: TunnelDomainServers): void {
  t.describe("tunnel domain: silent connections", () => {
    const env = useDomainServer(
      t,
      h,
      servers,
      { scheme: "http", connections: { maxSilentConnectionsPerAddress: 2 } },
      async (s) => ({ box: await s.sandbox([HTTP_PORT], { [HTTP_PORT]: "http-echo" }) }),
    );
    t.it(
      "requests let through count as in flight, refused ones do not (the cap on silent connections drops them)",
      async () => {
        const { box, port, wire } = await env();
        // From an address of their own, so the SDK's connection (from 127.0.0.1) is not among them.
        const opened: WireConnection[] = [];
        const connection = async (name: string) => {
          const c = wire.connect(port, `GET / HTTP/1.1\r\nHost: ${name}\r\n\r\n`, { localAddress: "127.0.0.5" });
          opened.push(c);
          const answers = new Answers(c);
          return { c, answers, status: await answers.next() };
        };
        try {
          // Refused (401, 404): still silent, so a third connection from the address drops the oldest.
          const refused = [await connection(nameOf(box.id, HTTP_PORT, true)), await connection(nameOf(box.id, 1))];
          deepEqual(
            refused.map((r) => r.status),
            ["HTTP/1.1 401 Unauthorized", "HTTP/1.1 404 Not Found"],
          );
          const third = await connection(nameOf(box.id, HTTP_PORT));
          await refused[0]?.c.closed;
          // Let through: served connections are not silent, and stay open for their next request.
          const served = [third, await connection(nameOf(box.id, HTTP_PORT))];
          const last = await connection(nameOf(box.id, HTTP_PORT));
          deepEqual(
            [...served, last].map((r) => r.status),
            [ADMITTED, ADMITTED, ADMITTED],
          );
          third.c.write(`GET / HTTP/1.1\r\nHost: ${nameOf(box.id, HTTP_PORT)}\r\n\r\n`);
          equal(await third.answers.next(), ADMITTED);
        } finally {
          for (const c of opened) c.destroy();
        }
      },
      T,
    );
  });

  t.describe("tunnel domain: the hosted requests' budget", () => {
    const env = useDomainServer(
      t,
      h,
      servers,
      { scheme: "http", connections: { maxConnections: 20, maxSilentConnectionsPerAddress: 5 } },
      async (s) => ({ box: await s.sandbox([RAW_PORT], { [RAW_PORT]: "held-requests" }) }),
    );
    t.it(
      "anonymous requests to an open tunnel that never end take at most half the connections: the API still answers",
      async () => {
        const { box, port, token, wire } = await env();
        const held: WireConnection[] = [];
        const statuses: string[] = [];
        try {
          for (let i = 0; i < 20; i++) {
            const c = wire.connect(
              port,
              `POST /slow/${i} HTTP/1.1\r\nHost: ${nameOf(box.id, RAW_PORT)}\r\nContent-Length: 100000\r\n\r\nx`,
            );
            held.push(c);
            // The first bytes back: the app's 200 (let through, in flight for good) or a refusal.
            statuses.push(statusLine(await c.next()) || "(closed)");
          }
          const api = await wire.connect(
            port,
            `POST /sbx.v1.ImageService/ListImages HTTP/1.1\r\nHost: ${DOMAIN}\r\nAuthorization: Bearer ${token}\r\n` +
              "content-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
          ).closed;
          equal(statusLine(api), ADMITTED);
          equal(statuses.filter((s) => s === ADMITTED).length, 10, `statuses: ${statuses}`);
          equal(statuses.filter((s) => s === "HTTP/1.1 503 Service Unavailable").length, 10, `statuses: ${statuses}`);
          // A refused request's connection is closed.
          for (const [i, c] of held.entries()) if (statuses[i] !== ADMITTED) match(await c.closed, /^HTTP\/1\.1 503 /);
        } finally {
          for (const c of held) c.destroy();
        }
      },
      T,
    );
  });

  t.describe("tunnel domain: caps per client address and per sandbox port", () => {
    const env = useDomainServer(
      t,
      h,
      servers,
      { scheme: "http", connections: { hosted: { maxRequestsPerTarget: 2, maxRequestsPerAddress: 3 } } },
      async (s) => {
        const boxes: Sandbox[] = [];
        for (let i = 0; i < 3; i++) boxes.push(await s.sandbox([RAW_PORT], { [RAW_PORT]: "held-requests" }));
        return { boxes };
      },
    );
    t.it(
      "one client address and one sandbox port have caps of their own; WebSockets count",
      async () => {
        const { boxes, port, wire } = await env();
        const [a, b, c] = boxes.map((box) => nameOf(box.id, RAW_PORT)) as [string, string, string];
        const held: WireConnection[] = [];
        const sockets: { close(): void }[] = [];
        /** The first status line back: the app's 200 (let through and held) or the refusal. */
        const outcome = async (name: string, path: string, localAddress?: string) => {
          const post = wire.connect(
            port,
            `POST ${path} HTTP/1.1\r\nHost: ${name}\r\nContent-Length: 100000\r\n\r\nx`,
            localAddress ? { localAddress } : {},
          );
          held.push(post);
          return statusLine(await post.next());
        };
        const refused = "HTTP/1.1 503 Service Unavailable";
        try {
          equal(await outcome(a, "/a1"), ADMITTED);
          equal(await outcome(a, "/a2"), ADMITTED);
          equal(await outcome(a, "/a3"), refused, "the port's cap");
          equal(await outcome(b, "/b1"), ADMITTED);
          equal(await outcome(c, "/c1"), refused, "the address's cap");
          equal(await outcome(c, "/c2", "127.0.0.2"), ADMITTED, "another address");
          // A WebSocket holds its place until it closes.
          sockets.push(await wire.websocket(`ws://${c}:${port}/ws`, { localAddress: "127.0.0.2" }));
          await rejects(
            () => wire.websocket(`ws://${c}:${port}/ws2`, { localAddress: "127.0.0.3" }),
            Error,
            /status 503/,
          );
        } finally {
          for (const socket of sockets) socket.close();
          for (const post of held) post.destroy();
        }
      },
      T,
    );
  });

  t.describe("tunnel domain: the deadline for a request's body", () => {
    const env = useDomainServer(
      t,
      h,
      servers,
      { scheme: "http", connections: { hosted: { requestTimeoutMs: 200 } } },
      async (s) => ({ box: await s.sandbox([RAW_PORT], { [RAW_PORT]: "held-requests" }) }),
    );
    t.it(
      "a request let through whose body does not arrive in time is answered 408 and its connection closed (HTTP/1.1 and HTTP/2)",
      async () => {
        const { box, port, url, wire } = await env();
        const name = nameOf(box.id, RAW_PORT);
        // The app answers nothing on /quiet paths: the answer is the front door's (a refusal would be a 503).
        const post = wire.connect(
          port,
          `POST /quiet/late HTTP/1.1\r\nHost: ${name}\r\nContent-Length: 100000\r\n\r\nx`,
        );
        match(await post.closed, /^HTTP\/1\.1 408 /);
        const session = wire.http2(url);
        try {
          const stream = session.request(
            { ":method": "POST", ":path": "/quiet/late2", ":authority": name, "content-length": "100000" },
            "x",
            { keepOpen: true },
          );
          equal((await stream.head).status, 408);
        } finally {
          session.close();
        }
      },
      T,
    );
  });
}
