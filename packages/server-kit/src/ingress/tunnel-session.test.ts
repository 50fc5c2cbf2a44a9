// The server's end of a tunnel connection against a client scripted here frame by frame, over
// a channel that never sends what it is given (a client that does not read): what a client can
// make the server hold — replies queued, dials in flight, streams and their descriptors, window
// bytes — stays within the budget, and a session ends with its sandbox.
import { Duplex } from "node:stream";
import {
  goawayFrame,
  MUX_MAX_STREAMS,
  MUX_WINDOW,
  type MuxControlFrame,
  MuxFrameReader,
  MuxFrameType,
  openFrame,
  pingFrame,
  resetFrame,
} from "@sbx/proto";
import { describe, expect, it } from "vitest";
import type { Engine } from "../engine/engine.js";
import { Notifier } from "../notifier.js";
import { IngressDialError, type IngressDialer } from "./gateway.js";
import { TunnelBudget, type TunnelLimits } from "./tunnel-budget.js";
import { type TunnelChannel, TunnelSession } from "./tunnel-session.js";

/** A channel whose client reads nothing: what is sent stays queued. */
class StuckChannel implements TunnelChannel {
  readonly frames: MuxControlFrame[] = [];
  queued = 0;
  readingPaused = false;
  closedByServer = false;
  readonly #reader = new MuxFrameReader({ data: () => {}, control: (frame) => this.frames.push(frame) });
  send(parts: readonly Uint8Array[]): void {
    for (const part of parts) {
      this.queued += part.byteLength;
      this.#reader.push(part);
    }
  }
  onDrain(): void {}
  pauseReading(): void {
    this.readingPaused = true;
  }
  resumeReading(): void {
    this.readingPaused = false;
  }
  close(): void {
    this.closedByServer = true;
  }
  of(type: number): MuxControlFrame[] {
    return this.frames.filter((f) => f.type === type);
  }
}

/** A dialer that counts its dials; each hangs until aborted (or forever, with `ignoreSignal`). */
class HangingDialer implements IngressDialer {
  calls = 0;
  pending = 0;
  constructor(readonly ignoreSignal = false) {}
  dial(_sandboxId: string, port: number, signal?: AbortSignal): Promise<Duplex> {
    this.calls++;
    this.pending++;
    return new Promise((_resolve, reject) => {
      if (this.ignoreSignal) return;
      signal?.addEventListener("abort", () => {
        this.pending--;
        reject(new IngressDialError(`the dial to port ${port} was abandoned`, "refused"));
      });
    });
  }
}

/** A port whose app never reads: what is written stays in its buffer, nothing is taken. */
class DeafDialer implements IngressDialer {
  readonly upstreams: Duplex[] = [];
  async dial(): Promise<Duplex> {
    const upstream = new Duplex({ read() {}, write() {} });
    this.upstreams.push(upstream);
    return upstream;
  }
}

function sandboxEngine(): { engine: Engine; sandbox: { running: boolean; ended: Notifier } } {
  const sandbox = { running: true, ended: new Notifier() };
  return { engine: { sandboxes: new Map([["sb-1", sandbox]]) } as unknown as Engine, sandbox };
}

function started(dialer: IngressDialer, limits: Partial<TunnelLimits> = {}, budget = new TunnelBudget(limits)) {
  const channel = new StuckChannel();
  const { engine, sandbox } = sandboxEngine();
  const s = new TunnelSession(channel, { engine, dialer, sandboxId: "sb-1", budget });
  s.start();
  return { channel, session: s, budget, sandbox };
}

const concat = (frames: Uint8Array[]) => Buffer.concat(frames);
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("the server's end of a tunnel connection, against a client that does not read", () => {
  it("answers at most one PING while its PONG has not gone", () => {
    const { channel, session } = started(new DeafDialer());
    const ping = pingFrame(MuxFrameType.ping, new Uint8Array(8));
    for (let i = 0; i < 100; i++) session.receive(concat(Array(1000).fill(ping)));
    expect(channel.of(MuxFrameType.pong)).toHaveLength(1);
    expect(channel.queued).toBeLessThan(100);
  });

  it("stops reading a client whose replies pile up, and ends it past the cap: the queue stays bounded", () => {
    const { channel, session, budget } = started(new DeafDialer());
    const { queueHighWater, maxQueuedBytes } = budget.limits;
    // OPENs of a bad port: each answered with a RESET, several times its size.
    let id = 1;
    const chunk = () => concat(Array.from({ length: 4096 }, () => openFrame(id++, 0)));
    let chunks = 0;
    while (!channel.readingPaused && chunks < 1000) {
      session.receive(chunk());
      chunks++;
    }
    expect(channel.readingPaused).toBe(true);
    expect(channel.closedByServer).toBe(false);
    const pausedAt = channel.queued;
    expect(pausedAt).toBeGreaterThanOrEqual(2 * queueHighWater);
    // Bytes a paused channel still hands over (a WebSocket's parsed messages): past the cap, GOAWAY.
    for (let i = 0; i < 1000 && !channel.closedByServer; i++) session.receive(chunk());
    expect(channel.closedByServer).toBe(true);
    expect(channel.of(MuxFrameType.goaway)).toEqual([
      expect.objectContaining({ code: "limit", reason: "the client does not read what the server sends" }),
    ]);
    const queued = channel.queued;
    session.receive(chunk());
    expect(channel.queued).toBe(queued);
    expect(queued).toBeLessThan(maxQueuedBytes + 2 * 4096 * 80);
  });

  it("counts a stream until its dial has settled: OPEN then RESET does not start dial after dial", async () => {
    const dialer = new HangingDialer(true); // a dial that never settles, its signal ignored
    const { channel, session, budget } = started(dialer);
    for (let id = 1; id <= 5000; id++) session.receive(concat([openFrame(id, 80), resetFrame(id, "closed", "")]));
    expect(dialer.calls).toBe(MUX_MAX_STREAMS);
    expect(budget.streams).toBe(MUX_MAX_STREAMS);
    expect(channel.of(MuxFrameType.reset).length).toBe(5000 - MUX_MAX_STREAMS);
    expect(channel.of(MuxFrameType.reset)[0]).toMatchObject({ code: "limit" });
  });

  it("aborts a stream's dial when the client resets it or the session ends, and gives its slot back", async () => {
    const dialer = new HangingDialer();
    const { session, budget } = started(dialer);
    for (let id = 1; id <= 2000; id++) {
      session.receive(concat([openFrame(id, 80), resetFrame(id, "closed", "")]));
      expect(dialer.pending).toBe(0); // aborted at once
      await settle(); // and given back once its dial has rejected
    }
    expect(dialer.calls).toBe(2000);
    expect(budget).toMatchObject({ streams: 0, dials: 0 });
    session.receive(concat([openFrame(2001, 80), openFrame(2002, 80)]));
    expect(dialer.pending).toBe(2);
    session.closed();
    expect(dialer.pending).toBe(0);
    await settle();
    expect(budget).toMatchObject({ streams: 0, dials: 0 });
  });

  it("resets a stream whose dial does not answer in time", async () => {
    const { channel, session, budget } = started(new HangingDialer(), { dialTimeoutMs: 20 });
    session.receive(openFrame(1, 80));
    while (channel.of(MuxFrameType.reset).length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(channel.of(MuxFrameType.reset)).toEqual([
      {
        type: MuxFrameType.reset,
        stream: 1,
        code: "refused",
        reason: "port 80 of sandbox sb-1 did not answer within 0.02 s",
      },
    ]);
    expect(budget).toMatchObject({ streams: 0, dials: 0 });
  });

  it("caps dials in flight and streams over every connection of the route", async () => {
    const budget = new TunnelBudget({ streams: 10, dials: 4 });
    const a = started(new HangingDialer(), {}, budget);
    const b = started(new HangingDialer(), {}, budget);
    a.session.receive(concat([1, 2, 3, 4, 5].map((id) => openFrame(id, 80))));
    b.session.receive(openFrame(1, 80));
    expect(a.channel.of(MuxFrameType.reset)).toEqual([expect.objectContaining({ stream: 5, code: "limit" })]);
    expect(b.channel.of(MuxFrameType.reset)).toEqual([expect.objectContaining({ stream: 1, code: "limit" })]);
    expect(budget.dials).toBe(4);
    a.session.closed();
    await settle();
    const deaf = new DeafDialer();
    const c = started(deaf, {}, budget);
    c.session.receive(concat(Array.from({ length: 11 }, (_, i) => openFrame(i + 1, 80))));
    await settle();
    // 4 dials at once: the rest refused until they settle; then at most 10 streams in all.
    expect(c.channel.of(MuxFrameType.opened)).toHaveLength(4);
    for (let id = 12; id < 24; id += 4) {
      c.session.receive(concat([id, id + 1, id + 2, id + 3].map((n) => openFrame(n, 80))));
      await settle();
    }
    expect(budget.streams).toBe(10);
    expect(c.channel.of(MuxFrameType.reset).at(-1)).toMatchObject({
      code: "limit",
      reason: "the server holds 10 tunnel connections already",
    });
    expect(deaf.upstreams).toHaveLength(10);
  });

  it("shares a connection's window budget among its streams: many open, each is granted less", async () => {
    const deaf = new DeafDialer();
    const { channel, session, budget } = started(deaf);
    const { windowBytesPerConnection, minStreamWindow } = budget.limits;
    session.receive(openFrame(1, 80));
    await settle();
    expect(channel.of(MuxFrameType.opened)).toEqual([{ type: MuxFrameType.opened, stream: 1, window: MUX_WINDOW }]);
    session.receive(concat(Array.from({ length: MUX_MAX_STREAMS - 1 }, (_, i) => openFrame(i + 2, 80))));
    await settle();
    const windows = (channel.of(MuxFrameType.opened) as { window: number }[]).map((f) => f.window);
    expect(windows).toHaveLength(MUX_MAX_STREAMS);
    const granted = windows.reduce((n, w) => n + w, 0);
    expect(granted).toBeLessThanOrEqual(windowBytesPerConnection + MUX_MAX_STREAMS * minStreamWindow);
    expect(Math.min(...windows)).toBe(minStreamWindow);
    expect(budget.windowBytes).toBe(granted);
    session.closed();
    expect(budget).toMatchObject({ windowBytes: 0, streams: 0 });
  });

  it("caps window bytes over every connection of the route", async () => {
    const budget = new TunnelBudget({ windowBytes: 4 * MUX_WINDOW });
    const sessions = [0, 1, 2, 3, 4, 5].map(() => started(new DeafDialer(), {}, budget));
    for (const s of sessions) s.session.receive(openFrame(1, 80));
    await settle();
    const windows = sessions.map((s) => (s.channel.of(MuxFrameType.opened)[0] as { window: number }).window);
    expect(windows.slice(0, 4)).toEqual([MUX_WINDOW, MUX_WINDOW, MUX_WINDOW, MUX_WINDOW]);
    expect(windows.slice(4)).toEqual([budget.limits.minStreamWindow, budget.limits.minStreamWindow]);
  });

  it("ends with its sandbox: GOAWAY notRunning, every port's connection closed", async () => {
    const deaf = new DeafDialer();
    const { channel, session: s, sandbox } = started(deaf);
    s.receive(concat([openFrame(1, 80), openFrame(2, 80)]));
    await settle();
    sandbox.running = false;
    sandbox.ended.notify();
    await settle();
    expect(channel.of(MuxFrameType.goaway)).toEqual([
      { type: MuxFrameType.goaway, stream: 0, code: "notRunning", reason: "sandbox sb-1 has finished" },
    ]);
    expect(channel.closedByServer).toBe(true);
    expect(deaf.upstreams.map((u) => u.destroyed)).toEqual([true, true]);
  });

  it("acts on nothing after the client's GOAWAY, even in the same chunk", async () => {
    const dialer = new HangingDialer();
    const { session: s } = started(dialer);
    s.receive(concat([goawayFrame("closed", "bye"), openFrame(1, 80)]));
    expect(dialer.calls).toBe(0);
  });
});
