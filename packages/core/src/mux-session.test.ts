// The client's end of the tunnel route against a server scripted here frame by frame (over an
// in-memory channel): windows both ways, what it does with a server that breaks them, and how
// refusals, resets, drops and silence end its connections.
import {
  dataHead,
  endFrame,
  goawayFrame,
  MUX_WINDOW,
  MUX_WINDOW_UPDATE,
  type MuxControlFrame,
  MuxFrameReader,
  MuxFrameType,
  openedFrame,
  pingFrame,
  readyFrame,
  resetFrame,
  windowFrame,
} from "@sbx/proto";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ConnectionError, FailedPreconditionError, NotFoundError, TunnelError } from "./errors.js";
import { KEEPALIVE_MS, muxUrl, openMuxSession } from "./mux-session.js";
import type { OpenTunnelChannel, PortSession, TunnelChannelEvents } from "./port-session.js";

type Frame = MuxControlFrame | { type: typeof MuxFrameType.data; stream: number; bytes: number };

/** A server at the frame level: what the client sent, and a way to answer. */
class ScriptedServer {
  readonly frames: Frame[] = [];
  closedByClient = false;
  /** Whether the channel says it is full (its drained() a promise that never settles). */
  full = false;
  events: TunnelChannelEvents | undefined;
  readonly #reader = new MuxFrameReader({
    data: (stream, piece) => {
      const last = this.frames.at(-1);
      if (last?.type === MuxFrameType.data && last.stream === stream && this.#inData) last.bytes += piece.byteLength;
      else this.frames.push({ type: MuxFrameType.data, stream, bytes: piece.byteLength });
      this.#inData = true;
    },
    control: (frame) => {
      this.#inData = false;
      this.frames.push(frame);
    },
  });
  #inData = false;

  readonly open: OpenTunnelChannel = async (request, events) => {
    expect(request.url).toBe("http://sbx.test/base/sbx.v1/sandboxes/sb-1/tunnel");
    expect(request.token).toBe("secret");
    this.events = events;
    return {
      keepsParts: false,
      send: (parts) => {
        for (const part of parts) this.#reader.push(part.slice());
        this.#inData = false;
      },
      drained: () => (this.full ? new Promise<void>(() => {}) : undefined),
      close: () => {
        this.closedByClient = true;
      },
    };
  };

  send(...frames: Uint8Array[]): void {
    for (const frame of frames) this.events?.bytes(frame);
  }

  /** DATA bytes the client sent on `stream`. */
  dataOn(stream: number): number {
    let n = 0;
    for (const f of this.frames) if (f.type === MuxFrameType.data && f.stream === stream) n += f.bytes;
    return n;
  }

  of(type: number): Frame[] {
    return this.frames.filter((f) => f.type === type);
  }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

async function started(server: ScriptedServer): Promise<PortSession> {
  const opening = openMuxSession(server.open, {
    endpoint: "http://sbx.test/base/",
    token: "secret",
    sandboxId: "sb-1",
  });
  await tick();
  server.send(readyFrame());
  return opening;
}

/** A connection to `port` on stream `id`, the server answering OPENED. */
async function opened(server: ScriptedServer, session: PortSession, port: number, id: number) {
  const opening = session.open(port);
  await tick();
  expect(server.frames).toContainEqual({ type: MuxFrameType.open, stream: id, port });
  server.send(openedFrame(id, MUX_WINDOW));
  return opening;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("the client's end of the tunnel route", () => {
  it("names the route under the endpoint's path", () => {
    expect(muxUrl("https://h:1/x/?q#f", "sb a")).toBe("https://h:1/x/sbx.v1/sandboxes/sb%20a/tunnel");
  });

  it("acknowledges what the app has read, and only that: an unread connection holds up only itself", async () => {
    const server = new ScriptedServer();
    const session = await started(server);
    const slow = await opened(server, session, 5432, 1);
    const fast = await opened(server, session, 5432, 2);
    const chunk = new Uint8Array(256 * 1024);
    // Both connections get their whole window; only the fast one is read.
    for (let sent = 0; sent < MUX_WINDOW; sent += chunk.byteLength) {
      server.send(dataHead(1, chunk.byteLength), chunk, dataHead(2, chunk.byteLength), chunk);
    }
    const reader = fast.readable.getReader();
    let read = 0;
    while (read < MUX_WINDOW) read += ((await reader.read()).value as Uint8Array).byteLength;
    const windows = server.of(MuxFrameType.window) as { stream: number; increment: number }[];
    expect(windows.every((w) => w.stream === 2)).toBe(true);
    expect(windows.reduce((n, w) => n + w.increment, 0)).toBeGreaterThanOrEqual(MUX_WINDOW - MUX_WINDOW_UPDATE);
    // The slow one is read at last: its window opens again.
    const slowReader = slow.readable.getReader();
    for (let got = 0; got < MUX_WINDOW; ) got += ((await slowReader.read()).value as Uint8Array).byteLength;
    expect(server.of(MuxFrameType.window)).toContainEqual(expect.objectContaining({ stream: 1 }));
  });

  it("sends no more than the server's window, and more as its WINDOW frames come", async () => {
    const server = new ScriptedServer();
    const session = await started(server);
    const conn = await opened(server, session, 80, 1);
    const writer = conn.writable.getWriter();
    const writing = writer.write(new Uint8Array(MUX_WINDOW + 100_000));
    await tick();
    expect(server.dataOn(1)).toBe(MUX_WINDOW);
    server.send(windowFrame(1, 60_000));
    await tick();
    expect(server.dataOn(1)).toBe(MUX_WINDOW + 60_000);
    server.send(windowFrame(1, 1_000_000));
    await writing;
    expect(server.dataOn(1)).toBe(MUX_WINDOW + 100_000);
    await writer.close();
    expect(server.frames.at(-1)).toEqual({ type: MuxFrameType.end, stream: 1 });
  });

  it("resets a connection whose server sends past the window (a TunnelError to the app), and keeps the others", async () => {
    const server = new ScriptedServer();
    const session = await started(server);
    const bad = await opened(server, session, 80, 1);
    const good = await opened(server, session, 81, 2);
    const chunk = new Uint8Array(256 * 1024);
    for (let sent = 0; sent <= MUX_WINDOW; sent += chunk.byteLength) server.send(dataHead(1, chunk.byteLength), chunk);
    expect(server.of(MuxFrameType.reset)).toEqual([
      { type: MuxFrameType.reset, stream: 1, code: "protocol", reason: "stream 1 sent past its window" },
    ]);
    const reader = bad.readable.getReader();
    let error: unknown;
    try {
      for (;;) if ((await reader.read()).done) break;
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TunnelError);
    expect((error as TunnelError).port).toBe(80);
    server.send(dataHead(2, 3), Uint8Array.of(1, 2, 3), endFrame(2));
    const goodReader = good.readable.getReader();
    expect([...((await goodReader.read()).value as Uint8Array)]).toEqual([1, 2, 3]);
    expect((await goodReader.read()).done).toBe(true);
  });

  it("turns the server's codes into typed errors: a refused port, a finished sandbox, an unknown one", async () => {
    const server = new ScriptedServer();
    const session = await started(server);
    const opening = session.open(5432);
    await tick();
    server.send(resetFrame(1, "refused", "nothing listens on port 5432"));
    const refused = await opening.catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TunnelError);
    expect((refused as TunnelError).port).toBe(5432);
    expect((refused as Error).message).toBe("nothing listens on port 5432");
    const conn = await opened(server, session, 80, 2);
    server.send(goawayFrame("notRunning", "sandbox sb-1 has finished"));
    await expect(conn.readable.getReader().read()).rejects.toBeInstanceOf(FailedPreconditionError);
    expect(await session.ended).toBeInstanceOf(FailedPreconditionError);
    expect(server.closedByClient).toBe(true);

    const refusing = new ScriptedServer();
    const start = openMuxSession(refusing.open, {
      endpoint: "http://sbx.test/base",
      token: "secret",
      sandboxId: "sb-1",
    });
    await tick();
    refusing.send(goawayFrame("notFound", "sandbox sb-1 not found"));
    await expect(start).rejects.toBeInstanceOf(NotFoundError);
  });

  it("a dropped channel ends open connections with a TunnelError naming their port; one closed before READY is a ConnectionError", async () => {
    const server = new ScriptedServer();
    const session = await started(server);
    const conn = await opened(server, session, 6379, 1);
    server.send(dataHead(1, 2), Uint8Array.of(7, 7));
    server.events?.closed("the server closed the connection");
    const reader = conn.readable.getReader();
    expect([...((await reader.read()).value as Uint8Array)]).toEqual([7, 7]); // what had come is read first
    const error = await reader.read().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TunnelError);
    expect((error as TunnelError).port).toBe(6379);
    expect((error as Error).message).toBe(
      "port 6379 of sandbox sb-1: the connection to the server dropped (the server closed the connection)",
    );
    expect(session.over).toBe(true);
    expect(await session.ended).toBeInstanceOf(TunnelError);
    await expect(session.open(6379)).rejects.toBeInstanceOf(TunnelError);

    const early = new ScriptedServer();
    const start = openMuxSession(early.open, { endpoint: "http://sbx.test/base", token: "secret", sandboxId: "sb-1" });
    await tick();
    early.events?.closed("WebSocket close 1006");
    await expect(start).rejects.toBeInstanceOf(ConnectionError);
  });

  it("a silent server is pinged, and dropped when it stays silent", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const server = new ScriptedServer();
    const session = await started(server);
    vi.advanceTimersByTime(KEEPALIVE_MS); // heard from: READY
    expect(server.of(MuxFrameType.ping)).toEqual([]);
    vi.advanceTimersByTime(KEEPALIVE_MS);
    expect(server.of(MuxFrameType.ping)).toHaveLength(1);
    server.send(pingFrame(MuxFrameType.pong, new Uint8Array(8))); // an answer: alive
    vi.advanceTimersByTime(KEEPALIVE_MS);
    expect(session.over).toBe(false);
    vi.advanceTimersByTime(2 * KEEPALIVE_MS); // a ping, then silence
    expect(session.over).toBe(true);
    expect(server.closedByClient).toBe(true);
    expect(String(await session.ended)).toMatch(/no answer to a ping/);
  });

  it("answers the server's pings, and shutdown closes the channel once the last connection is over", async () => {
    const server = new ScriptedServer();
    const session = await started(server);
    server.send(pingFrame(MuxFrameType.ping, Uint8Array.of(9, 8, 7, 6, 5, 4, 3, 2)));
    expect(server.of(MuxFrameType.pong)).toEqual([
      { type: MuxFrameType.pong, stream: 0, data: Uint8Array.of(9, 8, 7, 6, 5, 4, 3, 2) },
    ]);
    const conn = await opened(server, session, 80, 1);
    session.shutdown();
    await expect(session.open(81)).rejects.toBeInstanceOf(TunnelError);
    expect(server.closedByClient).toBe(false);
    await conn.writable.close();
    server.send(endFrame(1));
    expect((await conn.readable.getReader().read()).done).toBe(true);
    expect(server.closedByClient).toBe(true);
    expect(await session.ended).toBeUndefined();
  });

  it("leaves a server's pings unanswered while the channel is full: a server that pings and never reads grows nothing here", async () => {
    const server = new ScriptedServer();
    const session = await started(server);
    server.full = true;
    for (let i = 0; i < 10_000; i++) server.send(pingFrame(MuxFrameType.ping, new Uint8Array(8)));
    expect(server.of(MuxFrameType.pong)).toHaveLength(0);
    server.full = false;
    server.send(pingFrame(MuxFrameType.ping, new Uint8Array(8)));
    expect(server.of(MuxFrameType.pong)).toHaveLength(1);
    expect(session.over).toBe(false);
  });

  it("sends a connection no more than the window OPENED granted before the server's WINDOW", async () => {
    const server = new ScriptedServer();
    const session = await started(server);
    const opening = session.open(80);
    await tick();
    server.send(openedFrame(1, 1000));
    const conn = await opening;
    const writer = conn.writable.getWriter();
    void writer.write(new Uint8Array(5000));
    await tick();
    expect(server.dataOn(1)).toBe(1000);
    server.send(windowFrame(1, 4000));
    await tick();
    expect(server.dataOn(1)).toBe(5000);
  });
});
