// What reaches an app through a tunnel domain's names on the fake (the server's own front door
// and gateway): request framing kept (no body turned into a second request), the host the
// request was routed by, cookie-authenticated requests from other origins refused, gateway
// names that say nothing about sandboxes without a token, and redirects that stay on the host.
import { connect as http2Connect } from "node:http2";
import { connect as netConnect } from "node:net";
import { type Sandbox, SandboxClient } from "@sbx/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeServer, type FakeServer } from "../index.js";

const DOMAIN = "sbx.test";
const APP = 8000;
const RAW = 8100;

/** Sends `data` on a new connection and resolves with everything that came back until the server closed it. */
function exchange(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, "127.0.0.1");
    let got = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      got += d;
    });
    socket.on("close", () => resolve(got));
    socket.on("error", reject);
    socket.write(data);
  });
}

/** A request's head as the app received it (lower-case names), and its body decoded by the head's own framing. */
interface Received {
  readonly requestLine: string;
  readonly headers: Record<string, string[]>;
  readonly body: string;
}

/**
 * Reads one HTTP/1.1 request (or answer) from `bytes` by its own framing (Content-Length,
 * chunked, or no body), or undefined while it is incomplete.
 */
function readRequest(bytes: string): Received | undefined {
  const end = bytes.indexOf("\r\n\r\n");
  if (end === -1) return undefined;
  const [requestLine = "", ...lines] = bytes.slice(0, end).split("\r\n");
  const headers: Record<string, string[]> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    headers[name] = [...(headers[name] ?? []), line.slice(colon + 1).trim()];
  }
  let rest = bytes.slice(end + 4);
  if (headers["transfer-encoding"]?.join(",").toLowerCase() === "chunked") {
    let body = "";
    for (;;) {
      const lineEnd = rest.indexOf("\r\n");
      if (lineEnd === -1) return undefined;
      const size = Number.parseInt(rest.slice(0, lineEnd), 16);
      if (rest.length < lineEnd + 2 + size + 2) return undefined;
      body += rest.slice(lineEnd + 2, lineEnd + 2 + size);
      rest = rest.slice(lineEnd + 2 + size + 2);
      if (size === 0) return { requestLine, headers, body };
    }
  }
  const length = Number(headers["content-length"]?.[0] ?? 0);
  if (rest.length < length) return undefined;
  return { requestLine, headers, body: rest.slice(0, length) };
}

describe("requests through a tunnel domain's names on the fake", () => {
  let fake: FakeServer;
  let client: SandboxClient;
  let port: number;
  let sb: Sandbox;
  let other: Sandbox;

  beforeAll(async () => {
    fake = createFakeServer({ tunnelDomain: DOMAIN, tunnelScheme: "http" });
    ({ port } = await fake.listen());
    client = new SandboxClient({ transport: fake.transport });
    fake.onPort(APP, async (request, { sandboxId }) =>
      Response.json({
        sandboxId,
        host: request.headers.get("host"),
        path: new URL(request.url).pathname,
        user: request.headers.get("x-verified-user-data"),
        body: await request.text(),
      }),
    );
    // An app that reads each request by the framing its head announces, and answers with what
    // it read: a body sent with no framing would be left over, for the app to take as the next
    // request (with whatever X-Verified-User-Data it carries).
    fake.onPortConnection(RAW, async (connection) => {
      const writer = connection.writable.getWriter();
      let bytes = "";
      const reader = connection.readable.getReader();
      for (;;) {
        const { value: chunk, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }));
        if (done) return;
        bytes += Buffer.from(chunk).toString("latin1");
        const request = readRequest(bytes);
        if (!request) continue;
        const body = JSON.stringify(request);
        await writer.write(
          Buffer.from(
            `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
          ),
        );
        await writer.close();
        return;
      }
    });
    sb = await client.sandboxes.create({ ports: [APP, RAW] });
    other = await client.sandboxes.create({ ports: [APP] });
  });
  afterAll(async () => {
    await client.close();
    await fake.close();
  });

  const host = (id: string, p: number, gateway = false) => `${p}-${id}${gateway ? "-auth" : ""}.${DOMAIN}`;
  /** What the raw app read, from a whole HTTP/1.1 answer. */
  const received = (answer: string) => JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as Received;

  it("an HTTP/2 request's body without a length goes to the app chunked, never as bytes after the request", async () => {
    const { token } = await sb.createConnectToken({ port: RAW, userMetadata: { user: "ada" } });
    const smuggled = `GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Verified-User-Data: {"user":"bob"}\r\n\r\n`;
    const session = http2Connect(`http://127.0.0.1:${port}`);
    try {
      const text = await new Promise<string>((resolve, reject) => {
        const stream = session.request(
          {
            ":method": "GET",
            ":path": "/first",
            ":authority": host(sb.id, RAW, true),
            authorization: `Bearer ${token}`,
          },
          { endStream: false },
        );
        let got = "";
        stream.setEncoding("utf8");
        stream.on("data", (d: string) => {
          got += d;
        });
        stream.on("end", () => resolve(got));
        stream.on("error", reject);
        stream.end(smuggled);
      });
      const app = JSON.parse(text) as Received;
      expect(app.requestLine).toBe("GET /first HTTP/1.1");
      expect(app.headers["transfer-encoding"]).toEqual(["chunked"]);
      expect(app.headers["content-length"]).toBeUndefined();
      expect(app.headers["x-verified-user-data"]).toEqual(['{"user":"ada"}']);
      expect(app.body).toBe(smuggled);
    } finally {
      session.destroy();
    }
  });

  it("Connection naming Content-Length, Host or X-Verified-User-Data removes none of them", async () => {
    const { token } = await sb.createConnectToken({ port: RAW, userMetadata: { user: "ada" } });
    const answer = await exchange(
      port,
      `GET /cl HTTP/1.1\r\nHost: ${host(sb.id, RAW, true)}\r\nAuthorization: Bearer ${token}\r\n` +
        `Connection: close, content-length, host, x-verified-user-data, x-gone\r\nX-Gone: 1\r\nContent-Length: 5\r\n\r\nHELLO`,
    );
    const app = received(answer);
    expect(app.headers["content-length"]).toEqual(["5"]);
    expect(app.headers.host).toEqual([host(sb.id, RAW, true)]);
    expect(app.headers["x-verified-user-data"]).toEqual(['{"user":"ada"}']);
    expect(app.headers["x-gone"]).toBeUndefined();
    expect(app.body).toBe("HELLO");
  });

  it("a chunked GET goes on chunked; a transfer coding other than chunked, or two lengths: 400", async () => {
    const chunked = await exchange(
      port,
      `GET /te HTTP/1.1\r\nHost: ${host(sb.id, RAW)}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n`,
    );
    const app = received(chunked);
    expect(app.headers["transfer-encoding"]).toEqual(["chunked"]);
    expect(app.body).toBe("HELLO");
    const refused = [
      `GET /te HTTP/1.1\r\nHost: ${host(sb.id, RAW)}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n`,
      `POST /te HTTP/1.1\r\nHost: ${host(sb.id, RAW)}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n`,
      `POST /cl HTTP/1.1\r\nHost: ${host(sb.id, RAW)}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nHELLO!`,
    ];
    for (const request of refused) expect(await exchange(port, request), request).toMatch(/^HTTP\/1\.1 (400|501) /);
  });

  it("the app is told the host the request was routed by (HTTP/2 :authority, an absolute target), not another Host", async () => {
    const session = http2Connect(`http://127.0.0.1:${port}`);
    try {
      const text = await new Promise<string>((resolve, reject) => {
        const stream = session.request({ ":path": "/h2", ":authority": host(sb.id, APP), host: "evil.example" });
        let got = "";
        stream.setEncoding("utf8");
        stream.on("data", (d: string) => {
          got += d;
        });
        stream.on("end", () => resolve(got));
        stream.on("error", reject);
      });
      expect(JSON.parse(text)).toMatchObject({ sandboxId: sb.id, host: host(sb.id, APP) });
    } finally {
      session.destroy();
    }
    const absolute = await exchange(
      port,
      `GET http://x@${host(sb.id, APP)}/abs HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`,
    );
    expect(JSON.parse(readRequest(absolute)?.body ?? "")).toMatchObject({
      sandboxId: sb.id,
      host: host(sb.id, APP),
      path: "/abs",
    });
    // Several Host headers are refused with an absolute target too.
    const twoHosts = await exchange(
      port,
      `GET http://${host(sb.id, APP)}/ HTTP/1.1\r\nHost: ${host(sb.id, APP)}\r\nHost: ${host(other.id, APP)}\r\nConnection: close\r\n\r\n`,
    );
    expect(twoHosts).toMatch(/^HTTP\/1\.1 400 /);
  });

  it("a cookie does not let in a request that changes things from another origin (403); a token sent along does", async () => {
    const { url, token } = await sb.createConnectToken({ port: APP, userMetadata: { user: "ada" } });
    const gateway = new URL(url).host;
    const cookie = `sbx_${sb.id}_${APP}=${token}`;
    const sibling = `http://${host(other.id, APP)}:${port}`;
    const status = async (method: string, headers: string) =>
      (
        await exchange(
          port,
          `${method} /act HTTP/1.1\r\nHost: ${gateway}\r\n${headers}Content-Length: 0\r\nConnection: close\r\n\r\n`,
        )
      ).split("\r\n")[0];
    const withCookie = `Cookie: ${cookie}\r\n`;
    expect(await status("POST", `${withCookie}Origin: ${sibling}\r\n`)).toBe("HTTP/1.1 403 Forbidden");
    expect(await status("DELETE", `${withCookie}Origin: null\r\n`)).toBe("HTTP/1.1 403 Forbidden");
    expect(await status("PUT", `${withCookie}Sec-Fetch-Site: same-site\r\n`)).toBe("HTTP/1.1 403 Forbidden");
    expect(await status("POST", `${withCookie}Sec-Fetch-Site: cross-site\r\n`)).toBe("HTTP/1.1 403 Forbidden");
    // The host's own origin, a request with neither header (not a browser's), a safe method: let in.
    expect(await status("POST", `${withCookie}Origin: ${new URL(url).origin}\r\nSec-Fetch-Site: same-origin\r\n`)).toBe(
      "HTTP/1.1 200 OK",
    );
    expect(await status("POST", `${withCookie}Sec-Fetch-Site: none\r\n`)).toBe("HTTP/1.1 200 OK");
    expect(await status("POST", withCookie)).toBe("HTTP/1.1 200 OK");
    expect(await status("GET", `${withCookie}Origin: ${sibling}\r\nSec-Fetch-Site: same-site\r\n`)).toBe(
      "HTTP/1.1 200 OK",
    );
    // The token in the request itself (a page had to be given it): any origin.
    expect(await status("POST", `Authorization: Bearer ${token}\r\nOrigin: ${sibling}\r\n`)).toBe("HTTP/1.1 200 OK");
    expect(await status("POST", `Origin: ${sibling}\r\n`)).toBe("HTTP/1.1 401 Unauthorized");
  });

  it("a gateway name answers 401 alike for a sandbox that runs, one that ended and one that never was", async () => {
    const ask = async (name: string) => {
      const answer = await exchange(port, `GET / HTTP/1.1\r\nHost: ${name}\r\nConnection: close\r\n\r\n`);
      return answer.replace(/\r\ndate: [^\r]*/i, "");
    };
    const ended = await client.sandboxes.create({ ports: [APP] });
    await ended.terminate();
    const running = await ask(host(other.id, 1, true));
    expect(running).toMatch(/^HTTP\/1\.1 401 /);
    expect(await ask(host(ended.id, APP, true))).toBe(running);
    expect(await ask(host("sb-00000000000000000000", 1, true))).toBe(running);
  });

  it("a query token's redirect stays on the host, whatever slashes the path starts with", async () => {
    const { url, token } = await sb.createConnectToken({ port: APP });
    const gateway = new URL(url).host;
    for (const [path, location] of [
      ["/.//evil.example/x", "/evil.example/x"],
      ["//evil.example/x", "/x"],
      ["/page", "/page"],
    ] as const) {
      const answer = await exchange(
        port,
        `GET ${path}?sbx_token=${token}&a=1 HTTP/1.1\r\nHost: ${gateway}\r\nConnection: close\r\n\r\n`,
      );
      expect(answer, path).toMatch(/^HTTP\/1\.1 302 /);
      expect(/\r\nlocation: ([^\r]*)\r\n/i.exec(answer)?.[1], path).toBe(`${location}?a=1`);
    }
  });
});
