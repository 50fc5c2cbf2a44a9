import { describe, expect, it } from "vitest";
import {
  bearerProtocol,
  dataHead,
  endFrame,
  goawayFrame,
  MUX_CODES,
  MUX_HEAD_BYTES,
  MUX_MAX_DATA,
  MUX_MAX_REASON,
  type MuxControlFrame,
  MuxFrameReader,
  MuxFrameType,
  MuxProtocolError,
  muxPath,
  openedFrame,
  openFrame,
  parseMuxPath,
  pingFrame,
  readyFrame,
  resetFrame,
  tokenOfProtocol,
  windowFrame,
} from "./port-mux.js";

type Seen = { data: Map<number, number[]>; control: MuxControlFrame[]; lasts: number };

function reader(): { reader: MuxFrameReader; seen: Seen } {
  const seen: Seen = { data: new Map(), control: [], lasts: 0 };
  const r = new MuxFrameReader({
    data(stream, piece, last) {
      const bytes = seen.data.get(stream) ?? [];
      bytes.push(...piece);
      seen.data.set(stream, bytes);
      if (last) seen.lasts++;
    },
    control(frame) {
      seen.control.push(frame);
    },
  });
  return { reader: r, seen };
}

const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
};

/** A frame with any head, for frames the writers never make. */
const raw = (type: number, stream: number, payload: number[]) => {
  const bytes = new Uint8Array(MUX_HEAD_BYTES + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, type);
  view.setUint32(1, stream);
  view.setUint32(5, payload.length);
  bytes.set(payload, MUX_HEAD_BYTES);
  return bytes;
};

describe("the tunnel route's frames", () => {
  const payload = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff);
  const frames = concat([
    readyFrame(),
    openFrame(1, 5432),
    openedFrame(1, 65_536),
    dataHead(1, payload.byteLength),
    payload,
    windowFrame(1, 65_536),
    dataHead(3, 3),
    Uint8Array.of(1, 2, 3),
    endFrame(1),
    resetFrame(3, "refused", "nothing listens on port 5432 ✓"),
    pingFrame(MuxFrameType.ping, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)),
    goawayFrame("notFound", "sandbox sb-x not found"),
  ]);
  const expected: MuxControlFrame[] = [
    { type: MuxFrameType.ready, stream: 0 },
    { type: MuxFrameType.open, stream: 1, port: 5432 },
    { type: MuxFrameType.opened, stream: 1, window: 65_536 },
    { type: MuxFrameType.window, stream: 1, increment: 65_536 },
    { type: MuxFrameType.end, stream: 1 },
    { type: MuxFrameType.reset, stream: 3, code: "refused", reason: "nothing listens on port 5432 ✓" },
    { type: MuxFrameType.ping, stream: 0, data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) },
    { type: MuxFrameType.goaway, stream: 0, code: "notFound", reason: "sandbox sb-x not found" },
  ];

  it("read back whole, whatever the chunks are cut to", () => {
    for (const size of [1, 2, 5, 9, 10, 64, 1021, frames.byteLength]) {
      const { reader: r, seen } = reader();
      for (let at = 0; at < frames.byteLength; at += size) r.push(frames.subarray(at, at + size));
      expect(seen.control, `chunks of ${size}`).toEqual(expected);
      expect(seen.data.get(1), `chunks of ${size}`).toEqual([...payload]);
      expect(seen.data.get(3)).toEqual([1, 2, 3]);
      expect(seen.lasts).toBe(2);
    }
  });

  it("DATA passes through as views of the chunk pushed, not copies", () => {
    const chunk = concat([dataHead(5, 4), Uint8Array.of(9, 8, 7, 6)]);
    const pieces: Uint8Array[] = [];
    new MuxFrameReader({ data: (_s, piece) => pieces.push(piece), control: () => {} }).push(chunk);
    expect(pieces[0]?.buffer).toBe(chunk.buffer);
  });

  it("a reason is cut to its limit on a character boundary", () => {
    const { reader: r, seen } = reader();
    r.push(resetFrame(1, "closed", "é".repeat(MUX_MAX_REASON)));
    const frame = seen.control[0] as { reason: string };
    expect(frame.reason).toBe("é".repeat(MUX_MAX_REASON / 2));
  });

  it("an unknown code reads as undefined (a newer peer's)", () => {
    const { reader: r, seen } = reader();
    r.push(raw(MuxFrameType.reset, 1, [200, 0x68, 0x69]));
    expect(seen.control[0]).toEqual({ type: MuxFrameType.reset, stream: 1, code: undefined, reason: "hi" });
    expect(MUX_CODES.refused).toBe(7);
  });

  it("frames that break the rules are MuxProtocolError", () => {
    const bad = [
      raw(99, 1, []), // unknown type
      raw(MuxFrameType.data, 1, []), // empty DATA
      raw(MuxFrameType.data, 0, [1]), // DATA on stream 0
      raw(MuxFrameType.ready, 1, []), // a connection frame on a stream
      raw(MuxFrameType.open, 1, [1]), // OPEN of 1 byte
      raw(MuxFrameType.window, 1, [0, 0, 0, 0]), // a WINDOW of 0
      raw(MuxFrameType.reset, 1, []), // no code
      raw(MuxFrameType.goaway, 0, [1, 0xff]), // not UTF-8
    ];
    for (const frame of bad) {
      const { reader: r } = reader();
      expect(() => r.push(frame), String(frame.subarray(0, MUX_HEAD_BYTES))).toThrow(MuxProtocolError);
    }
    const tooBig = new Uint8Array(MUX_HEAD_BYTES);
    new DataView(tooBig.buffer).setUint8(0, MuxFrameType.data);
    new DataView(tooBig.buffer).setUint32(1, 1);
    new DataView(tooBig.buffer).setUint32(5, MUX_MAX_DATA + 1);
    expect(() => reader().reader.push(tooBig)).toThrow(/DATA frame of 262145 bytes/);
  });
});

describe("the tunnel route's path and token", () => {
  it("names a sandbox, and only this route's paths parse", () => {
    expect(muxPath("sb-a b")).toBe("/sbx.v1/sandboxes/sb-a%20b/tunnel");
    expect(parseMuxPath(muxPath("sb-a b"))).toBe("sb-a b");
    for (const path of [
      "/sbx.v1/sandboxes/sb-x/ports/80/connect",
      "/sbx.v1/sandboxes//tunnel",
      "/sbx.v1/sandboxes/sb-x/tunnel/x",
      "/sbx.v1/sandboxes/%E0%A4%A/tunnel",
      "/other",
    ]) {
      expect(parseMuxPath(path), path).toBeUndefined();
    }
  });

  it("a token travels as a subprotocol and back", () => {
    const token = "tök+/=en";
    const protocol = bearerProtocol(token);
    expect(protocol).toMatch(/^sbx\.bearer\.[A-Za-z0-9_-]+$/);
    expect(tokenOfProtocol(protocol)).toBe(token);
    expect(tokenOfProtocol("sbx.bearer.***")).toBeUndefined();
    expect(tokenOfProtocol("sbx.tunnel.v1")).toBeUndefined();
  });
});
