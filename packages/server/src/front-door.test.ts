// The server's front door against hostile clients (loopback only, bounded in count and
// size): tokens are checked before bodies are read, bodies have limits, garbage is the
// caller's bad input, and silent connections cannot pin the server's descriptors.
import { randomBytes } from "node:crypto";
import { request as http1Request } from "node:http";
import { type ClientHttp2Session, connect as http2Connect } from "node:http2";
import { type Socket, connect as tcpConnect } from "node:net";
import { ConnectionError, SandboxClient } from "@sbx/node";
import { FilesystemService, ProcessService, SandboxService } from "@sbx/proto";
import { READ_MAX_BYTES } from "@sbx/server-kit";
import { MAX_CONCURRENT_STREAMS } from "@sbx/server-kit/listen";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SANDBOX_OPEN_FILES } from "./runtime/local/launch-command.js";
import { realServerAvailable, startTestServer } from "./test-support.js";

const available = await realServerAvailable();

type Server = Awaited<ReturnType<typeof startTestServer>>;

function useServer(options: Parameters<typeof startTestServer>[0] = {}) {
  const holder: { server?: Server } = {};
  beforeAll(async () => {
    holder.server = await startTestServer(options);
  });
  afterAll(async () => {
    await holder.server?.close();
    holder.server?.removeData();
  });
  return () => {
    if (!holder.server) throw new Error("the server is not running");
    return holder.server;
  };
}

/** Fails when `promise` has not settled within `ms` (so a regression fails fast instead of hanging). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const MiB = 1024 * 1024;

/**
 * POSTs (HTTP/1.1) a body announced as 1 GiB, sending up to `cap` bytes as fast as the server
 * takes them, until an answer comes: its status and JSON body, how much was sent by then, and
 * whether the server then closed the connection.
 */
function hugePostHttp1(url: string, path: string, headers: Record<string, string>, cap = 256 * MiB, method?: string) {
  return new Promise<{ status: number; body: string; sent: number; closed: Promise<void> }>((resolve, reject) => {
    const req = http1Request(`${url}${path}`, {
      method: method ?? (path.startsWith("/sbx.v1/files/") ? "PUT" : "POST"),
      headers: { ...headers, "content-length": String(1024 * MiB) },
    });
    let sent = 0;
    let answered = false;
    const chunk = Buffer.alloc(MiB);
    req.on("error", () => {}); // the server hangs up on the rest: expected
    req.on("response", (res) => {
      answered = true;
      const closed = new Promise<void>((done) => req.socket?.once("close", () => done()));
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, sent, closed }));
      res.on("error", reject);
    });
    const pump = () => {
      while (!answered && sent < cap) {
        sent += chunk.byteLength;
        if (!req.write(chunk)) return void req.once("drain", pump);
      }
      if (!answered) reject(new Error(`no answer after sending ${sent} bytes`));
    };
    pump();
  });
}

/** One HTTP/2 request with `body` pieces written with backpressure until the answer ends. */
function http2Call(url: string, headers: Record<string, string>, body: Iterable<Uint8Array> | Uint8Array) {
  return new Promise<{ status: number; headers: Record<string, unknown>; data: Buffer; sent: number }>(
    (resolve, reject) => {
      const session = http2Connect(url);
      session.on("error", reject);
      const stream = session.request({ ":method": "POST", ...headers });
      let status = 0;
      let answerHeaders: Record<string, unknown> = {};
      const data: Buffer[] = [];
      let sent = 0;
      let ended = false;
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        answerHeaders = { ...h };
      });
      stream.on("trailers", (t) => {
        answerHeaders = { ...answerHeaders, ...t };
      });
      stream.on("data", (d: Buffer) => data.push(d));
      stream.on("error", () => {});
      // The answer's end (a refused request's stream may stay open on our side: the server
      // stops reading it, and the session goes).
      const finish = () => {
        if (ended) return;
        ended = true;
        session.destroy();
        resolve({ status, headers: answerHeaders, data: Buffer.concat(data), sent });
      };
      stream.on("end", finish);
      stream.on("close", finish);
      if (body instanceof Uint8Array) {
        sent = body.byteLength;
        stream.end(body);
        return;
      }
      const pieces = body[Symbol.iterator]();
      const pump = () => {
        for (;;) {
          if (ended) return;
          const next = pieces.next();
          if (next.done) return void stream.end();
          sent += next.value.byteLength;
          if (!stream.write(next.value)) return void stream.once("drain", pump);
        }
      };
      pump();
    },
  );
}

function* megabytes(count: number): Generator<Uint8Array> {
  const chunk = Buffer.alloc(MiB);
  for (let i = 0; i < count; i++) yield chunk;
}

/** A gRPC / Connect-streaming envelope around `message`. */
const envelope = (message: Uint8Array) => {
  const out = Buffer.alloc(5 + message.byteLength);
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, 5);
  return out;
};

const codeOf = (body: string): string | undefined => /"code":"(\w+)"/.exec(body)?.[1];

const closed = (socket: Socket) =>
  new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once("close", () => resolve())));
const open = (url: string, localAddress?: string) =>
  new Promise<Socket>((resolve, reject) => {
    const { hostname, port } = new URL(url);
    const socket = tcpConnect({ host: hostname, port: Number(port), ...(localAddress ? { localAddress } : {}) }, () =>
      resolve(socket),
    );
    socket.on("error", reject);
  });
const sessionClosed = (session: ClientHttp2Session) =>
  new Promise<void>((resolve) =>
    session.closed || session.destroyed ? resolve() : session.once("close", () => resolve()),
  );
/** An HTTP/2 session whose client never lets the server send a byte of any answer's body. */
const zeroWindowSession = (url: string) => {
  const session = http2Connect(url, { settings: { initialWindowSize: 0 } });
  session.on("error", () => {});
  return session;
};
const unaryJson = (session: ClientHttp2Session, path: string, headers: Record<string, string> = {}) => {
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/json",
    "connect-protocol-version": "1",
    ...headers,
  });
  stream.on("error", () => {});
  stream.end("{}");
  return stream;
};

if (available) {
  describe("requests without a token", () => {
    const server = useServer();

    it("a huge unauthenticated Connect POST gets 401 before its body is read, and the connection is closed", async () => {
      const answer = await within(
        hugePostHttp1(server().url, "/sbx.v1.SandboxService/ListSandboxes", { "content-type": "application/proto" }),
        15_000,
        "401",
      );
      expect(answer.status).toBe(401);
      expect(codeOf(answer.body)).toBe("unauthenticated");
      expect(answer.sent).toBeLessThan(64 * MiB); // socket buffers, not the body
      await within(answer.closed, 5_000, "connection close");
    });

    it("a huge unauthenticated raw upload gets 401 and the rest of its body is never read", async () => {
      const answer = await within(
        hugePostHttp1(server().url, "/sbx.v1/files/sb-x?path=/a&upload=u1&offset=0", {}),
        15_000,
        "401",
      );
      expect(answer.status).toBe(401);
      expect(answer.sent).toBeLessThan(64 * MiB);
      await within(answer.closed, 5_000, "connection close");
    });

    it("gRPC and Connect streaming over HTTP/2 answer Unauthenticated without waiting for the body", async () => {
      const grpc = await within(
        http2Call(
          server().url,
          { ":path": "/sbx.v1.SandboxService/ListSandboxes", "content-type": "application/grpc", te: "trailers" },
          megabytes(256),
        ),
        15_000,
        "gRPC answer",
      );
      expect(grpc.headers["grpc-status"]).toBe("16");
      expect(grpc.sent).toBeLessThan(64 * MiB);
      const streaming = await within(
        http2Call(
          server().url,
          { ":path": "/sbx.v1.ProcessService/ReadOutput", "content-type": "application/connect+proto" },
          megabytes(256),
        ),
        15_000,
        "Connect streaming answer",
      );
      expect(streaming.status).toBe(200);
      expect(codeOf(streaming.data.toString("latin1"))).toBe("unauthenticated");
      expect(streaming.sent).toBeLessThan(64 * MiB);
    });

    it("a client pointed at it with https:// says it is not an sbx server there", async () => {
      const endpoint = server().url.replace("http:", "https:");
      await using client = new SandboxClient({ endpoint, token: server().token, maxRetries: 0 });
      const error = await client.sandboxes.fromId("sb-1").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionError);
      expect((error as Error).message).toContain(`this is not an sbx server at ${endpoint}`);
    });

    it("CORS preflights need no token", async () => {
      const res = await fetch(`${server().url}/sbx.v1.SandboxService/ListSandboxes`, { method: "OPTIONS" });
      expect(res.status).toBe(204);
    });

    it("a preflight with a huge body gets 204 and its connection is closed, the body never read", async () => {
      const answer = await within(
        hugePostHttp1(server().url, "/sbx.v1.SandboxService/ListSandboxes", {}, 256 * MiB, "OPTIONS"),
        15_000,
        "204",
      );
      expect(answer.status).toBe(204);
      await within(answer.closed, 5_000, "connection close");
    });

    it("a refused HTTP/1.1 request's answer closes its connection", async () => {
      const socket = await open(server().url);
      let answer = "";
      socket.on("data", (d: Buffer) => {
        answer += d.toString("latin1");
      });
      socket.write(
        "POST /sbx.v1.SandboxService/ListSandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
      );
      await within(closed(socket), 5_000, "connection close");
      expect(answer).toMatch(/^HTTP\/1\.1 401 /);
      expect(answer.toLowerCase()).toContain("connection: close");
    });

    it("an RPC without a Host header (HTTP/1.0) or with one that is no host is answered 400, and the server stays up", async () => {
      const token = `Authorization: Bearer ${server().token}\r\n`;
      for (const head of [
        "HTTP/1.0\r\n",
        `HTTP/1.0\r\n${token}`,
        "HTTP/1.1\r\nHost: a b\r\n",
        `HTTP/1.1\r\nHost: a b\r\n${token}`,
      ]) {
        const socket = await open(server().url);
        let answer = "";
        socket.on("data", (d: Buffer) => {
          answer += d.toString("latin1");
        });
        socket.write(
          `POST /sbx.v1.SandboxService/ListSandboxes ${head}Content-Type: application/json\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}`,
        );
        await within(closed(socket), 5_000, "connection close");
        expect(answer).toMatch(/^HTTP\/1\.1 400 /);
        expect(codeOf(answer)).toBe("invalid_argument");
      }
      const still = await fetch(`${server().url}/sbx.v1.SandboxService/ListSandboxes`, {
        method: "POST",
        headers: { authorization: `Bearer ${server().token}`, "content-type": "application/json" },
        body: "{}",
      });
      expect(still.status).toBe(200);
    });

    it("refused gRPC streams with unread bodies are closed, and so is their session", async () => {
      // A hand-made HTTP/2 client, to see the server's own frames (Node's client hides an
      // RST_STREAM(NO_ERROR) on a stream it still writes to, and a server's close after GOAWAY).
      const socket = await open(server().url);
      const seen = { resets: new Map<number, number>(), lastStreamId: -1, maxConcurrentStreams: -1, ended: false };
      let pending = Buffer.alloc(0);
      socket.on("data", (d: Buffer) => {
        pending = Buffer.concat([pending, d]);
        while (pending.byteLength >= 9) {
          const length = pending.readUIntBE(0, 3);
          if (pending.byteLength < 9 + length) break;
          const [type, flags, stream] = [pending[3], pending[4], pending.readUInt32BE(5) & 0x7fffffff];
          const payload = pending.subarray(9, 9 + length);
          pending = pending.subarray(9 + length);
          if (type === 3) seen.resets.set(stream, payload.readUInt32BE(0));
          if (type === 7) seen.lastStreamId = payload.readUInt32BE(0) & 0x7fffffff;
          if (type === 4 && !((flags as number) & 1)) {
            for (let i = 0; i + 6 <= payload.byteLength; i += 6) {
              if (payload.readUInt16BE(i) === 3) seen.maxConcurrentStreams = payload.readUInt32BE(i + 2);
            }
            socket.write(frame(4, 1, 0, Buffer.alloc(0))); // SETTINGS ack
          }
        }
      });
      socket.on("end", () => {
        seen.ended = true;
      });
      socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      socket.write(frame(4, 0, 0, Buffer.alloc(0)));
      const headers = hpackLiterals({
        ":method": "POST",
        ":scheme": "http",
        ":path": "/sbx.v1.FilesystemService/WriteFile",
        ":authority": "x",
        "content-type": "application/grpc",
        te: "trailers",
      });
      const piece = Buffer.alloc(16_383, 1);
      const streams = Array.from({ length: 100 }, (_, i) => 2 * i + 1);
      for (const id of streams) {
        socket.write(frame(1, 4, id, headers)); // END_HEADERS, the body never ends
        for (let i = 0; i < 4; i++) socket.write(frame(0, 0, id, piece)); // what the window allows
      }
      await within(closed(socket), 15_000, "session closed by the server");
      expect(seen.ended).toBe(true);
      expect(seen.maxConcurrentStreams).toBe(MAX_CONCURRENT_STREAMS);
      expect(seen.lastStreamId).toBeGreaterThan(0);
      const processed = streams.filter((id) => id <= seen.lastStreamId);
      expect(processed.map((id) => seen.resets.get(id))).toEqual(processed.map(() => 0)); // RST_STREAM(NO_ERROR)
    });
  });

  describe("request bodies", () => {
    const server = useServer();
    const auth = () => ({ authorization: `Bearer ${server().token}` });

    // Over the limit is resource_exhausted (Connect's and gRPC's code for a message larger
    // than the server reads): the request may be well-formed, it is only too large.
    it("a body over its RPC's limit is resource_exhausted, before it is read when its size is known", async () => {
      const answer = await within(
        hugePostHttp1(server().url, "/sbx.v1.SandboxService/GetSandbox", {
          ...auth(),
          "content-type": "application/proto",
        }),
        15_000,
        "answer",
      );
      expect(answer.status).toBe(429);
      expect(codeOf(answer.body)).toBe("resource_exhausted");
      expect(answer.sent).toBeLessThan(64 * MiB);
      const grpc = await within(
        http2Call(
          server().url,
          {
            ":path": "/sbx.v1.SandboxService/GetSandbox",
            "content-type": "application/grpc",
            te: "trailers",
            ...auth(),
          },
          envelope(new Uint8Array(READ_MAX_BYTES + 1)),
        ),
        15_000,
        "gRPC answer",
      );
      expect(grpc.headers["grpc-status"]).toBe("8");
    });

    it("an HTTP/2 stream answered before its body was read is closed by the server", async () => {
      const session = http2Connect(server().url);
      session.on("error", () => {});
      try {
        const stream = session.request({
          ":method": "POST",
          ":path": "/sbx.v1.SandboxService/GetSandbox",
          "content-type": "application/grpc",
          te: "trailers",
          ...auth(),
        });
        stream.on("error", () => {});
        let grpcStatus: unknown;
        stream.on("trailers", (t) => {
          grpcStatus = t["grpc-status"];
        });
        stream.resume();
        // A message announced over the limit, whose rest never comes.
        const header = Buffer.alloc(5);
        header.writeUInt32BE(READ_MAX_BYTES + 1, 1);
        stream.write(Buffer.concat([header, Buffer.alloc(1024)]));
        await within(new Promise((resolve) => stream.once("close", resolve)), 10_000, "stream closed by the server");
        expect(grpcStatus).toBe("8");
        expect(stream.rstCode).toBe(0); // NO_ERROR: "stop sending, the answer is complete"
        expect(session.closed).toBe(false); // a token holder's session stays
      } finally {
        session.destroy();
      }
    });

    it("WriteFile takes a full upload chunk, other RPCs do not", async () => {
      // Field 3 (data, bytes) of 5 MiB: over the common limit, within WriteFile's.
      const size = 5 * MiB;
      const header = Buffer.from([0x1a, ...varint(size)]);
      const message = Buffer.concat([header, Buffer.alloc(size)]);
      const call = (path: string) =>
        http2Call(server().url, { ":path": path, "content-type": "application/proto", ...auth() }, message);
      const writeFile = await call("/sbx.v1.FilesystemService/WriteFile");
      expect(codeOf(writeFile.data.toString())).not.toBe("resource_exhausted");
      expect(writeFile.status).toBeLessThan(500);
      const stat = await call("/sbx.v1.FilesystemService/Stat");
      expect(codeOf(stat.data.toString())).toBe("resource_exhausted");
    });

    it("300 garbage bodies to every RPC, in every protocol, are invalid_argument (401 without a token), never internal", async () => {
      const paths = [SandboxService, ProcessService, FilesystemService].flatMap((service) =>
        service.methods.map((m) => ({ path: `/${service.typeName}/${m.name}`, unary: m.methodKind === "unary" })),
      );
      const protocols = [
        { type: "application/proto", framed: false, grpc: false, unaryOnly: true },
        { type: "application/json", framed: false, grpc: false, unaryOnly: true },
        { type: "application/connect+proto", framed: true, grpc: false, unaryOnly: false },
        { type: "application/grpc", framed: true, grpc: true, unaryOnly: false },
        { type: "application/grpc+json", framed: true, grpc: true, unaryOnly: false },
      ];
      // Undecodable for sure: an illegal wire type, a truncated varint, broken JSON.
      const undecodable = [Buffer.from([0x0f, 0xff]), Buffer.from([0x0a, 0xff, 0xff]), Buffer.from("{]")];
      // A refused request sends its session away: those get a session each.
      const session = http2Connect(server().url);
      const one = (headers: Record<string, string>, body: Uint8Array) =>
        new Promise<{ status: number; code: string | undefined }>((resolve, reject) => {
          const own = headers.authorization ? undefined : http2Connect(server().url);
          own?.on("error", () => {});
          const stream = (own ?? session).request({ ":method": "POST", ...headers });
          stream.on("close", () => own?.destroy());
          let status = 0;
          let grpcStatus: string | undefined;
          let text = "";
          stream.on("response", (h) => {
            status = Number(h[":status"]);
            grpcStatus = h["grpc-status"] as string | undefined;
          });
          stream.on("trailers", (t) => {
            grpcStatus = (t["grpc-status"] as string | undefined) ?? grpcStatus;
          });
          stream.on("data", (d: Buffer) => {
            text += d.toString("latin1");
          });
          stream.on("error", reject);
          stream.on("end", () => resolve({ status, code: grpcStatus ?? codeOf(text) }));
          stream.end(body);
        });
      const grpcNames: Record<string, string> = {
        "3": "invalid_argument",
        "8": "resource_exhausted",
        "16": "unauthenticated",
      };
      let sent = 0;
      const seen = new Map<string, number>();
      try {
        for (let round = 0; sent < 300; round++) {
          for (const { path, unary } of paths) {
            for (const protocol of protocols) {
              if (protocol.unaryOnly !== unary && protocol.unaryOnly) continue;
              if (!protocol.grpc && !protocol.unaryOnly && unary) continue;
              const withToken = round % 2 === 0;
              const garbage = round < undecodable.length * 2 ? undecodable[round >> 1] : randomBytes(1 + (round % 97));
              const body = protocol.framed ? envelope(garbage as Uint8Array) : (garbage as Uint8Array);
              const answer = await one(
                {
                  ":path": path,
                  "content-type": protocol.type,
                  "connect-protocol-version": "1",
                  ...(protocol.grpc ? { te: "trailers" } : {}),
                  ...(withToken ? auth() : {}),
                },
                body,
              );
              sent++;
              const code = protocol.grpc ? (grpcNames[answer.code ?? ""] ?? `grpc ${answer.code}`) : answer.code;
              const key = `${withToken ? "token" : "no token"} ${code}`;
              seen.set(key, (seen.get(key) ?? 0) + 1);
              expect(answer.status, `${path} ${protocol.type}`).not.toBe(500);
              if (!withToken) expect(code, `${path} ${protocol.type}`).toBe("unauthenticated");
              else expect(code, `${path} ${protocol.type} ${garbage?.toString("hex")}`).toBe("invalid_argument");
            }
          }
        }
      } finally {
        session.close();
      }
      expect(sent).toBeGreaterThanOrEqual(300);
    });
  });

  describe("silent connections", () => {
    const server = useServer({
      connections: {
        firstRequestTimeoutMs: 500,
        idleTimeoutMs: 500,
        maxIdleConnections: 20,
        responseStallTimeoutMs: 500,
      },
    });

    it("refused requests keep no connection: HTTP/2 sessions that never take an answer's body are closed", async () => {
      const sessions = Array.from({ length: 20 }, () => zeroWindowSession(server().url));
      try {
        for (const session of sessions) unaryJson(session, "/sbx.v1.SandboxService/ListSandboxes");
        await within(Promise.all(sessions.map(sessionClosed)), 10_000, "sessions closed");
      } finally {
        for (const session of sessions) session.destroy();
      }
    });

    it("an answer that makes no progress drops its connection (HTTP/2, with a token)", async () => {
      const session = zeroWindowSession(server().url);
      try {
        const stream = unaryJson(session, "/sbx.v1.SandboxService/ListSandboxes", {
          authorization: `Bearer ${server().token}`,
        });
        const answered = new Promise((resolve) => stream.once("response", resolve));
        await within(answered, 5_000, "answer headers");
        await within(sessionClosed(session), 10_000, "stalled session dropped");
      } finally {
        session.destroy();
      }
    });

    it("an answer that makes no progress drops its connection (HTTP/1.1, with a token), and sandboxes get the usual open-files limit", async () => {
      const client = new SandboxClient({ endpoint: server().url, token: server().token });
      try {
        const sb = await client.sandboxes.create();
        try {
          // The server's own limit is raised; its sandboxes' is not.
          expect((await sb.run("ulimit -S -n")).stdout).toBe(`${SANDBOX_OPEN_FILES}\n`);
          await sb.run("head -c 67108864 /dev/zero > /tmp/big");
          const socket = await open(server().url);
          socket.pause(); // not reading, until the server has long given up
          let received = 0;
          socket.on("data", (d: Buffer) => {
            received += d.byteLength;
          });
          socket.on("error", () => {});
          socket.write(
            `GET /sbx.v1/files/${sb.id}?path=/tmp/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${server().token}\r\n\r\n`,
          );
          await new Promise((resolve) => setTimeout(resolve, 3_000)); // six stall timeouts
          socket.resume();
          await within(closed(socket), 15_000, "stalled connection dropped");
          expect(received).toBeLessThan(64 * MiB);
        } finally {
          await sb.terminate();
        }
      } finally {
        await client.close();
      }
    });

    it("closes a connection that sends nothing, half a request head, or only the HTTP/2 preface", async () => {
      const silent = await open(server().url);
      const halfHead = await open(server().url);
      halfHead.write("POST /sbx.v1.SandboxService/ListSandboxes HTTP/1.1\r\nHost: x\r\n");
      const prefaceOnly = await open(server().url);
      prefaceOnly.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      prefaceOnly.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // an empty SETTINGS frame
      prefaceOnly.on("data", () => {}); // the server's SETTINGS
      await within(Promise.all([closed(silent), closed(halfHead), closed(prefaceOnly)]), 10_000, "closing");
    });

    it("closes HTTP/2 sessions that stay idle after a request, and long answers are not cut", async () => {
      const session = http2Connect(server().url);
      const gone = new Promise<void>((resolve) => session.once("close", () => resolve()));
      await new Promise<void>((resolve, reject) => {
        const stream = session.request({ ":method": "OPTIONS", ":path": "/" }, { endStream: true });
        stream.on("response", () => {});
        stream.on("error", reject);
        stream.on("end", () => resolve());
        stream.resume();
      });
      await within(gone, 10_000, "idle session close");
      // Answers longer than both timeouts (a command's output followed live, its wait) are not
      // cut, and the client's next call after its session was closed as idle still works.
      const client = new SandboxClient({ endpoint: server().url, token: server().token });
      try {
        const sb = await client.sandboxes.create();
        try {
          expect((await sb.run("sleep 2; echo done")).stdout).toBe("done\n");
          await new Promise((resolve) => setTimeout(resolve, 1500)); // let the session go idle and be closed
          expect((await sb.run("echo again")).stdout).toBe("again\n");
        } finally {
          await sb.terminate();
        }
      } finally {
        await client.close();
      }
    });
  });

  describe("a flood of silent connections", () => {
    const server = useServer({ connections: { maxIdleConnections: 20, maxSilentConnectionsPerAddress: 10 } });

    it("silent connections are dropped before a client's idle session, and a flood from one address drops its own", async () => {
      const session = http2Connect(server().url);
      session.on("error", () => {});
      const bystanders: Socket[] = [];
      const attack: Socket[] = [];
      try {
        // A client that got in: its session is idle (and the oldest) when the flood comes.
        const served = unaryJson(session, "/sbx.v1.SandboxService/ListSandboxes", {
          authorization: `Bearer ${server().token}`,
        });
        served.resume();
        await within(new Promise((resolve) => served.once("end", resolve)), 5_000, "answer");
        for (let i = 0; i < 3; i++) bystanders.push(await open(server().url, "127.0.0.2"));
        for (let i = 0; i < 40; i++) attack.push(await open(server().url));
        await within(closed(attack[0] as Socket), 10_000, "the flood's oldest dropped");
        expect(session.closed || session.destroyed).toBe(false);
        expect(bystanders.map((socket) => socket.destroyed)).toEqual([false, false, false]);
      } finally {
        session.destroy();
        for (const socket of [...bystanders, ...attack]) socket.destroy();
      }
    });

    it("at the cap the oldest idle connection is dropped, and a real client still gets in", async () => {
      const attack: Socket[] = [];
      for (let i = 0; i < 60; i++) attack.push(await open(server().url));
      await within(closed(attack[0] as Socket), 10_000, "oldest dropped");
      const res = await fetch(`${server().url}/sbx.v1.SandboxService/ListSandboxes`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${server().token}`,
          "content-type": "application/json",
          "connect-protocol-version": "1",
        },
        body: "{}",
      });
      expect(res.status).toBe(200);
      const newest = attack[attack.length - 1] as Socket;
      expect(newest.destroyed).toBe(false);
      for (const socket of attack) socket.destroy();
    });
  });

  describe("a cap on all connections", () => {
    const server = useServer({ connections: { maxConnections: 5 } });

    it("at the cap a new connection is closed when every other one is busy", async () => {
      const busy = Array.from({ length: 5 }, () => zeroWindowSession(server().url));
      try {
        // Accepted requests whose answers cannot be sent: in flight, not idle.
        const answered = busy.map((session) => {
          const stream = unaryJson(session, "/sbx.v1.SandboxService/ListSandboxes", {
            authorization: `Bearer ${server().token}`,
          });
          return new Promise((resolve) => stream.once("response", resolve));
        });
        await within(Promise.all(answered), 10_000, "answer headers");
        const extra = await open(server().url);
        await within(closed(extra), 10_000, "the connection over the cap closed");
        expect(busy.map((session) => session.closed || session.destroyed)).toEqual([false, false, false, false, false]);
      } finally {
        for (const session of busy) session.destroy();
      }
    });
  });
}

/** An HTTP/2 frame. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.byteLength, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** A header block of HPACK literals without indexing (names and values under 127 bytes). */
function hpackLiterals(headers: Record<string, string>): Buffer {
  const parts = Object.entries(headers).flatMap(([name, value]) => [
    Buffer.from([0, name.length]),
    Buffer.from(name),
    Buffer.from([value.length]),
    Buffer.from(value),
  ]);
  return Buffer.concat(parts);
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
