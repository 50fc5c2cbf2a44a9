// The tunnel route (server-kit's, as the sbx server mounts it) frame by frame, through a client
// written here from @sbx/proto's frame writers and reader, over both kinds of upgrade: what it
// refuses, streams opened, ended and reset, and the flow control that keeps one stream's slow
// reader from holding up the others.
import { connect as netConnect, type Socket } from "node:net";
import { SandboxClient } from "@sbx/core";
import {
  bearerProtocol,
  dataHead,
  endFrame,
  MUX_PROTOCOL,
  MUX_WINDOW,
  type MuxControlFrame,
  MuxFrameReader,
  MuxFrameType,
  muxPath,
  openFrame,
  pingFrame,
  resetFrame,
  windowFrame,
} from "@sbx/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createFakeServer, type FakeServer } from "../index.js";

const TOKEN = "route-secret";
const ECHO = 7000;
const SOURCE = 7001;
const SILENT = 7002;

type Frame = MuxControlFrame | { type: typeof MuxFrameType.data; stream: number; bytes: Uint8Array };

/** A tunnel client at the frame level: frames sent as bytes, frames received in order. */
interface RawTunnel {
  send(...frames: Uint8Array[]): void;
  /** The next frame (DATA pieces of one frame are joined); rejects when the connection closes first. */
  next(): Promise<Frame>;
  /** Frames up to and including the first that `stop` takes. */
  until(stop: (frame: Frame) => boolean): Promise<Frame[]>;
  /** Resolves when the server has closed the connection. */
  readonly closed: Promise<void>;
  close(): void;
}

function collector(): {
  push(chunk: Uint8Array): void;
  end(): void;
  next(): Promise<Frame>;
  closed: Promise<void>;
} {
  const frames: Frame[] = [];
  const waiting: { resolve: (f: Frame) => void; reject: (e: Error) => void }[] = [];
  let ended = false;
  let markClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => {
    markClosed = resolve;
  });
  const deliver = (frame: Frame) => {
    const waiter = waiting.shift();
    if (waiter) waiter.resolve(frame);
    else frames.push(frame);
  };
  let pieces: Uint8Array[] = [];
  const reader = new MuxFrameReader({
    data(stream, piece, last) {
      pieces.push(piece.slice());
      if (!last) return;
      deliver({ type: MuxFrameType.data, stream, bytes: Buffer.concat(pieces) });
      pieces = [];
    },
    control: deliver,
  });
  return {
    push: (chunk) => reader.push(chunk),
    end() {
      ended = true;
      markClosed();
      for (const waiter of waiting.splice(0)) waiter.reject(new Error("the connection closed"));
    },
    next() {
      const frame = frames.shift();
      if (frame) return Promise.resolve(frame);
      if (ended) return Promise.reject(new Error("the connection closed"));
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
    closed,
  };
}

function rawTunnel(next: () => Promise<Frame>, rest: Omit<RawTunnel, "next" | "until">): RawTunnel {
  return {
    ...rest,
    next,
    async until(stop) {
      const seen: Frame[] = [];
      for (;;) {
        const frame = await next();
        seen.push(frame);
        if (stop(frame)) return seen;
      }
    },
  };
}

/** A plain HTTP/1.1 upgrade to the route (as @sbx/node's client makes). */
function plainTunnel(url: string, sandboxId: string, token: string | undefined): Promise<RawTunnel> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket: Socket = netConnect({ host: hostname, port: Number(port) });
    const frames = collector();
    let head = Buffer.alloc(0);
    let upgraded = false;
    socket.on("data", (chunk: Buffer) => {
      if (upgraded) return frames.push(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) return;
      const status = head.subarray(0, end).toString("latin1").split("\r\n")[0] ?? "";
      if (!status.startsWith("HTTP/1.1 101")) return reject(new Error(`not upgraded: ${status}`));
      upgraded = true;
      resolve(
        rawTunnel(frames.next, {
          send: (...parts) => {
            for (const part of parts) socket.write(part);
          },
          closed: frames.closed,
          close: () => socket.destroy(),
        }),
      );
      if (head.length > end + 4) frames.push(head.subarray(end + 4));
    });
    socket.on("close", () => frames.end());
    socket.on("error", reject);
    socket.write(
      `GET ${muxPath(sandboxId)} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: ${MUX_PROTOCOL}\r\n` +
        (token ? `authorization: Bearer ${token}\r\n` : "") +
        "\r\n",
    );
  });
}

/** A WebSocket to the route, the token as a subprotocol (as browsers send it). */
function websocketTunnel(url: string, sandboxId: string, token: string | undefined): Promise<RawTunnel> {
  return new Promise((resolve, reject) => {
    const protocols = [MUX_PROTOCOL, ...(token ? [bearerProtocol(token)] : [])];
    const ws = new WebSocket(url.replace(/^http/, "ws") + muxPath(sandboxId), protocols);
    const frames = collector();
    ws.on("message", (data: Buffer) => frames.push(data));
    ws.on("close", () => frames.end());
    ws.on("error", reject);
    ws.on("open", () =>
      resolve(
        rawTunnel(frames.next, {
          send: (...parts) => ws.send(Buffer.concat(parts)),
          closed: frames.closed,
          close: () => ws.terminate(),
        }),
      ),
    );
  });
}

const kinds = [
  { kind: "plain upgrade", open: plainTunnel },
  { kind: "WebSocket", open: websocketTunnel },
];

describe.each(kinds)("the tunnel route over a $kind", ({ open }) => {
  let fake: FakeServer;
  let url: string;
  let client: SandboxClient;
  let sandboxId: string;
  const tunnels: RawTunnel[] = [];
  /** A tunnel to sandbox `id` (default: the test's), with `token` (null: none). */
  const tunnel = async (id = sandboxId, token: string | null = TOKEN) => {
    const t = await open(url, id, token ?? undefined);
    tunnels.push(t);
    return t;
  };
  const ready = async () => {
    const t = await tunnel();
    expect(await t.next()).toEqual({ type: MuxFrameType.ready, stream: 0 });
    return t;
  };

  beforeAll(async () => {
    fake = createFakeServer({ token: TOKEN });
    fake.onPortConnection(ECHO, async ({ readable, writable }) => {
      await readable.pipeTo(writable);
    });
    const block = new Uint8Array(64 * 1024).fill(1);
    fake.onPortConnection(SOURCE, async ({ writable }) => {
      const writer = writable.getWriter();
      for (;;) await writer.write(block);
    });
    ({ url } = await fake.listen());
    client = new SandboxClient({ transport: fake.transport, token: TOKEN });
    sandboxId = (await client.sandboxes.create()).id;
  });
  afterAll(async () => {
    for (const t of tunnels) t.close();
    await client.close();
    await fake.close();
  });

  it("refuses with GOAWAY naming why: a missing or wrong token, an unknown or finished sandbox", async () => {
    const goaway = async (t: RawTunnel) => {
      const frame = await t.next();
      await t.closed;
      return frame;
    };
    expect(await goaway(await tunnel(sandboxId, null))).toMatchObject({
      type: MuxFrameType.goaway,
      code: "unauthenticated",
    });
    expect(await goaway(await tunnel(sandboxId, "wrong"))).toMatchObject({ code: "unauthenticated" });
    expect(await goaway(await tunnel("sb-nosuch"))).toEqual({
      type: MuxFrameType.goaway,
      stream: 0,
      code: "notFound",
      reason: "sandbox sb-nosuch not found",
    });
    const finished = await client.sandboxes.create();
    await finished.terminate({ wait: true });
    expect(await goaway(await tunnel(finished.id))).toMatchObject({ code: "notRunning" });
  });

  it("carries streams: OPEN → OPENED, DATA both ways, END both ways; a refused port or a bad one is RESET", async () => {
    const t = await ready();
    t.send(openFrame(1, ECHO), openFrame(3, SILENT), openFrame(4, 0));
    const opening = [await t.next(), await t.next(), await t.next()];
    expect(opening).toContainEqual({ type: MuxFrameType.opened, stream: 1, window: MUX_WINDOW });
    expect(opening).toContainEqual({
      type: MuxFrameType.reset,
      stream: 3,
      code: "refused",
      reason: `nothing listens on port ${SILENT} in sandbox ${sandboxId}`,
    });
    expect(opening).toContainEqual(expect.objectContaining({ type: MuxFrameType.reset, stream: 4, code: "invalid" }));
    const hello = new TextEncoder().encode("hello through the tunnel");
    t.send(dataHead(1, hello.byteLength), hello, endFrame(1));
    const back = await t.until((f) => f.type === MuxFrameType.end);
    expect(back).toEqual([
      { type: MuxFrameType.data, stream: 1, bytes: Buffer.from(hello) },
      { type: MuxFrameType.end, stream: 1 },
    ]);
    t.send(pingFrame(MuxFrameType.ping, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)));
    expect(await t.next()).toEqual({ type: MuxFrameType.pong, stream: 0, data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) });
  });

  it("sends a stream no more than its window, and more as WINDOW frames allow; other streams go on meanwhile", async () => {
    const t = await ready();
    t.send(openFrame(1, SOURCE));
    expect(await t.next()).toEqual({ type: MuxFrameType.opened, stream: 1, window: MUX_WINDOW });
    let got = 0;
    while (got < MUX_WINDOW) {
      const frame = await t.next();
      expect(frame).toMatchObject({ type: MuxFrameType.data, stream: 1 });
      got += (frame as { bytes: Uint8Array }).bytes.byteLength;
    }
    expect(got).toBe(MUX_WINDOW);
    // Stream 1 is stalled (its reader here takes nothing more); stream 2 carries 8 MiB through
    // the echo both ways, with its windows renewed as it is read.
    t.send(openFrame(2, ECHO));
    const sent = Uint8Array.from({ length: 8 * 1024 * 1024 }, (_, i) => (i * 13 + (i >> 9)) & 0xff);
    const received: Uint8Array[] = [];
    let receivedBytes = 0;
    let sentBytes = 0;
    let credit = MUX_WINDOW;
    const pump = () => {
      while (sentBytes < sent.byteLength && credit > 0) {
        const n = Math.min(credit, 256 * 1024, sent.byteLength - sentBytes);
        t.send(dataHead(2, n), sent.subarray(sentBytes, sentBytes + n));
        sentBytes += n;
        credit -= n;
      }
      if (sentBytes === sent.byteLength) {
        t.send(endFrame(2));
        sentBytes++;
      }
    };
    for (;;) {
      const frame = await t.next();
      if (frame.type === MuxFrameType.opened) pump();
      else if (frame.type === MuxFrameType.window && frame.stream === 2) {
        credit += frame.increment;
        pump();
      } else if (frame.type === MuxFrameType.data) {
        expect(frame.stream, "stalled stream 1 sent past its window").toBe(2);
        received.push(frame.bytes);
        receivedBytes += frame.bytes.byteLength;
        t.send(windowFrame(2, frame.bytes.byteLength));
      } else if (frame.type === MuxFrameType.end) {
        expect(frame.stream).toBe(2);
        break;
      }
    }
    expect(receivedBytes).toBe(sent.byteLength);
    expect(Buffer.concat(received).equals(Buffer.from(sent))).toBe(true);
    // Stream 1 goes on once it is given room.
    t.send(windowFrame(1, 1000));
    const more = await t.until((f) => f.type === MuxFrameType.data);
    expect(more.at(-1)).toMatchObject({ stream: 1 });
    expect((more.at(-1) as { bytes: Uint8Array }).bytes.byteLength).toBeLessThanOrEqual(1000);
    t.send(resetFrame(1, "closed", "done"));
  });

  it("resets a stream whose client sends past its window", async () => {
    let appReading!: () => void;
    const reading = new Promise<void>((resolve) => {
      appReading = resolve;
    });
    fake.onPortConnection(SILENT, async () => {
      appReading(); // …and never reads
      await new Promise(() => {});
    });
    const t = await ready();
    t.send(openFrame(1, SILENT));
    expect(await t.next()).toEqual({ type: MuxFrameType.opened, stream: 1, window: MUX_WINDOW });
    await reading;
    // Past the window by far: the app's side takes a few chunks into its buffers, and the
    // window grows by what it took.
    const chunk = new Uint8Array(256 * 1024);
    for (let sent = 0; sent <= 3 * MUX_WINDOW; sent += chunk.byteLength) t.send(dataHead(1, chunk.byteLength), chunk);
    expect(await t.until((f) => f.type === MuxFrameType.reset)).toContainEqual({
      type: MuxFrameType.reset,
      stream: 1,
      code: "protocol",
      reason: "stream 1 sent past its window",
    });
    fake.onPortConnection(SILENT, undefined);
  });

  it('ends the connection with GOAWAY "protocol" for a frame that breaks the rules', async () => {
    const t = await ready();
    t.send(openFrame(5, ECHO));
    expect(await t.next()).toEqual({ type: MuxFrameType.opened, stream: 5, window: MUX_WINDOW });
    t.send(openFrame(5, ECHO)); // a stream id that does not increase
    expect(await t.next()).toEqual({
      type: MuxFrameType.goaway,
      stream: 0,
      code: "protocol",
      reason: "stream 5 opened after stream 5",
    });
    await t.closed;
    const u = await ready();
    u.send(Uint8Array.of(42, 0, 0, 0, 1, 0, 0, 0, 0)); // an unknown frame type
    expect(await u.next()).toMatchObject({ type: MuxFrameType.goaway, code: "protocol" });
    await u.closed;
  });
});
