/**
 * The tunnel route's contract (hand-written, beside the raw routes): TCP connections to ports
 * inside one sandbox, many at once, multiplexed over one connection to the API's own port. The
 * server serves it, clients (`sb.connect`, `sb.tunnel`) open it, and both frame and parse its
 * bytes with this module. Browser-safe.
 *
 *   GET /sbx.v1/sandboxes/{sandboxId}/tunnel          (an HTTP/1.1 upgrade, one of two kinds)
 *
 *   - `Upgrade: websocket`, subprotocol `sbx.tunnel.v1` (browsers; any runtime with WebSocket):
 *     the frames below travel in binary WebSocket messages, cut anywhere (a message may hold
 *     several frames or part of one: receivers parse the messages' bytes as one stream).
 *   - `Upgrade: sbx.tunnel.v1` (Node): after the server's `101 Switching Protocols` the
 *     connection's bytes both ways are the frames themselves. No WebSocket framing, so no
 *     masking of what the client sends (RFC 6455 §5.3 asks every WebSocket client for an
 *     unpredictable mask on every frame, a copy of every byte the client sends).
 *
 * Auth: the sbx bearer token, as `Authorization: Bearer <token>`, or — browsers cannot set
 * headers on a WebSocket — as the subprotocol `sbx.bearer.<base64url(token)>` offered beside
 * `sbx.tunnel.v1`. The server completes the upgrade either way and then says, in its first frame,
 * whether the connection is usable: READY (the sandbox exists and runs), or GOAWAY with a code
 * and a reason (a wrong token, no such sandbox, …), then it closes. Browsers see frames, where
 * an HTTP status on a refused WebSocket would be hidden from them.
 *
 * Frames, big-endian:  type u8 | stream u32 | length u32 | payload (length bytes)
 *
 *   OPEN    client → server, stream ≠ 0   u16 port. Dial the port; stream ids are chosen by the
 *                                          client and strictly increase within a connection.
 *   OPENED  server → client, stream ≠ 0   u32 (1 to MUX_WINDOW): the port answered; DATA may
 *                                          flow both ways. The number is the stream's window
 *                                          toward the server: the bytes the client may send on
 *                                          it before the server's first WINDOW (the server
 *                                          grants less when many streams are open).
 *   DATA    both ways,       stream ≠ 0   1 to MUX_MAX_DATA bytes of the stream.
 *   WINDOW  both ways,       stream ≠ 0   u32 (> 0): the sender has taken that many more of
 *                                          the stream's bytes (flow control, below).
 *   END     both ways,       stream ≠ 0   empty. The sender sends no more bytes (TCP's
 *                                          half-close); the stream is done once both ended.
 *   RESET   both ways,       stream ≠ 0   u8 code, then a UTF-8 reason (≤ MUX_MAX_REASON
 *                                          bytes). The stream is over, both directions: a
 *                                          refused dial, the port's connection failing, or a
 *                                          client giving up. Nothing more is sent on it.
 *   READY   server → client, stream 0     empty. The first frame of a usable connection.
 *   GOAWAY  both ways,       stream 0     u8 code, then a UTF-8 reason. The connection ends:
 *                                          every stream on it is over (reset).
 *   PING    both ways,       stream 0     8 bytes, answered by a PONG with the same 8 bytes.
 *   PONG    both ways,       stream 0     8 bytes.
 *
 * Flow control, per stream and per direction: a sender may send a window of DATA on a stream
 * before any WINDOW (the server MUX_WINDOW bytes; the client what OPENED said), and then as
 * many more as the receiver's WINDOW frames add up to.
 * The receiver sends WINDOW as the stream's consumer takes the bytes (the client: as the local
 * app reads them; the server: as the port's connection has taken them), so a stream whose
 * consumer is slow stops its sender without holding up the other streams: the connection
 * itself is always read. A DATA frame past the window resets its stream (code "protocol").
 *
 * A connection carries at most MUX_MAX_STREAMS streams at once (an OPEN past it: RESET
 * "limit"). Frames on a stream that is over are ignored (they may cross a RESET). A frame
 * that breaks these rules otherwise (an unknown type, a bad length, a stream id that does not
 * increase) ends the connection: GOAWAY "protocol". When the connection drops without GOAWAY,
 * its streams are over as if reset; clients reconnect for new streams.
 */

export const MUX_ROUTE_PREFIX = "/sbx.v1/sandboxes/";
/** The subprotocol (WebSocket) and the upgrade token (plain) both sides speak. */
export const MUX_PROTOCOL = "sbx.tunnel.v1";
/** A subprotocol carrying the bearer token: this prefix, then the token as base64url (no padding). */
export const MUX_BEARER_PREFIX = "sbx.bearer.";
/** Bytes of a frame's head: type, stream, length. */
export const MUX_HEAD_BYTES = 9;
/** The largest DATA payload. */
export const MUX_MAX_DATA = 256 * 1024;
/** Bytes of a stream a sender may send before the receiver's first WINDOW. */
export const MUX_WINDOW = 2 * 1024 * 1024;
/** A receiver sends WINDOW once it has taken this many bytes since its last. */
export const MUX_WINDOW_UPDATE = 512 * 1024;
/** Streams open at once on one connection, at most (a server may allow fewer: RESET "limit"). */
export const MUX_MAX_STREAMS = 256;
/** The longest RESET or GOAWAY reason, in bytes. */
export const MUX_MAX_REASON = 1000;

export const MuxFrameType = {
  open: 1,
  opened: 2,
  data: 3,
  window: 4,
  end: 5,
  reset: 6,
  ready: 7,
  goaway: 8,
  ping: 9,
  pong: 10,
} as const;
export type MuxFrameType = (typeof MuxFrameType)[keyof typeof MuxFrameType];

/** Why a stream or a connection ended (RESET, GOAWAY), and what a client raises for it. */
export const MUX_CODES = {
  /** A bad port (InvalidError). */
  invalid: 1,
  /** Missing or wrong bearer token (AuthenticationError). */
  unauthenticated: 2,
  /** No such sandbox (NotFoundError). */
  notFound: 3,
  /** The sandbox has finished (FailedPreconditionError). */
  notRunning: 4,
  /** The server failed (InternalError). */
  internal: 5,
  /** The target cannot reach sandbox ports (UnsupportedError). */
  unsupported: 6,
  /** Nothing listens on the port, or the port's connection failed (TunnelError). */
  refused: 7,
  /** The other side closed the stream: a client gave up, the port's side went away (TunnelError). */
  closed: 8,
  /** A frame broke the rules above (TunnelError). */
  protocol: 9,
  /** Too many streams at once (TunnelError). */
  limit: 10,
  /** The server is going away (TunnelError; a client reconnects). */
  unavailable: 11,
} as const;
export type MuxCode = keyof typeof MUX_CODES;

const CODE_NAMES = new Map<number, MuxCode>(Object.entries(MUX_CODES).map(([name, value]) => [value, name as MuxCode]));

/** The route's path for `sandboxId`. */
export const muxPath = (sandboxId: string): string => `${MUX_ROUTE_PREFIX}${encodeURIComponent(sandboxId)}/tunnel`;

/** The sandbox id a path names, or undefined when it is not this route's. */
export function parseMuxPath(path: string): string | undefined {
  if (!path.startsWith(MUX_ROUTE_PREFIX)) return undefined;
  const parts = path.slice(MUX_ROUTE_PREFIX.length).split("/");
  if (parts.length !== 2 || parts[1] !== "tunnel" || parts[0] === "") return undefined;
  try {
    return decodeURIComponent(parts[0] as string);
  } catch {
    return undefined;
  }
}

/** The subprotocol that carries `token`. */
export function bearerProtocol(token: string): string {
  const bytes = new TextEncoder().encode(token);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return MUX_BEARER_PREFIX + btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The token a subprotocol carries, or undefined when it carries none (or not base64url). */
export function tokenOfProtocol(protocol: string): string | undefined {
  if (!protocol.startsWith(MUX_BEARER_PREFIX)) return undefined;
  const encoded = protocol.slice(MUX_BEARER_PREFIX.length);
  if (!/^[A-Za-z0-9_-]*$/.test(encoded)) return undefined;
  try {
    const binary = atob(encoded.replace(/-/g, "+").replace(/_/g, "/"));
    return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
}

// ---- Writing frames -------------------------------------------------------------------------

function head(type: MuxFrameType, stream: number, length: number, payload = 0): Uint8Array {
  const bytes = new Uint8Array(MUX_HEAD_BYTES + payload);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, type);
  view.setUint32(1, stream);
  view.setUint32(5, length);
  return bytes;
}

/** A DATA frame's head; its `length` payload bytes follow it. */
export const dataHead = (stream: number, length: number): Uint8Array => head(MuxFrameType.data, stream, length);

export function openFrame(stream: number, port: number): Uint8Array {
  const bytes = head(MuxFrameType.open, stream, 2, 2);
  new DataView(bytes.buffer).setUint16(MUX_HEAD_BYTES, port);
  return bytes;
}

/** OPENED, granting the client `window` bytes of the stream before the server's first WINDOW. */
export function openedFrame(stream: number, window: number): Uint8Array {
  const bytes = head(MuxFrameType.opened, stream, 4, 4);
  new DataView(bytes.buffer).setUint32(MUX_HEAD_BYTES, window);
  return bytes;
}
export const endFrame = (stream: number): Uint8Array => head(MuxFrameType.end, stream, 0);
export const readyFrame = (): Uint8Array => head(MuxFrameType.ready, 0, 0);

export function windowFrame(stream: number, increment: number): Uint8Array {
  const bytes = head(MuxFrameType.window, stream, 4, 4);
  new DataView(bytes.buffer).setUint32(MUX_HEAD_BYTES, increment);
  return bytes;
}

function closing(type: MuxFrameType, stream: number, code: MuxCode, reason: string): Uint8Array {
  const text = utf8Prefix(reason, MUX_MAX_REASON);
  const bytes = head(type, stream, 1 + text.byteLength, 1 + text.byteLength);
  bytes[MUX_HEAD_BYTES] = MUX_CODES[code];
  bytes.set(text, MUX_HEAD_BYTES + 1);
  return bytes;
}

export const resetFrame = (stream: number, code: MuxCode, reason: string): Uint8Array =>
  closing(MuxFrameType.reset, stream, code, reason);
export const goawayFrame = (code: MuxCode, reason: string): Uint8Array => closing(MuxFrameType.goaway, 0, code, reason);

export function pingFrame(type: typeof MuxFrameType.ping | typeof MuxFrameType.pong, data: Uint8Array): Uint8Array {
  const bytes = head(type, 0, 8, 8);
  bytes.set(data.subarray(0, 8), MUX_HEAD_BYTES);
  return bytes;
}

/** `text` as UTF-8, cut to at most `max` bytes on a character boundary. */
function utf8Prefix(text: string, max: number): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  if (bytes.byteLength <= max) return bytes;
  let end = max;
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

// ---- Reading frames -------------------------------------------------------------------------

/** Every frame but DATA, decoded. */
export type MuxControlFrame =
  | { readonly type: typeof MuxFrameType.open; readonly stream: number; readonly port: number }
  | { readonly type: typeof MuxFrameType.opened; readonly stream: number; readonly window: number }
  | { readonly type: typeof MuxFrameType.end | typeof MuxFrameType.ready; readonly stream: number }
  | { readonly type: typeof MuxFrameType.window; readonly stream: number; readonly increment: number }
  | {
      readonly type: typeof MuxFrameType.reset | typeof MuxFrameType.goaway;
      readonly stream: number;
      /** undefined: a code this side does not know (treated as "closed"). */
      readonly code: MuxCode | undefined;
      readonly reason: string;
    }
  | {
      readonly type: typeof MuxFrameType.ping | typeof MuxFrameType.pong;
      readonly stream: 0;
      readonly data: Uint8Array;
    };

export interface MuxFrameSink {
  /**
   * A piece of a DATA frame's payload, as it arrived (no copy: a view of the chunk pushed).
   * A frame's pieces come in order; `last` on its final one.
   */
  data(stream: number, piece: Uint8Array, last: boolean): void;
  control(frame: MuxControlFrame): void;
}

/** A frame broke the framing rules; the connection ends (GOAWAY "protocol"). */
export class MuxProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MuxProtocolError";
  }
}

const STREAM_FRAMES = new Set<number>([
  MuxFrameType.open,
  MuxFrameType.opened,
  MuxFrameType.data,
  MuxFrameType.window,
  MuxFrameType.end,
  MuxFrameType.reset,
]);

/** The payload length a control frame must have, or its bounds. */
function lengthProblem(type: number, length: number): string | undefined {
  const exact = (n: number) => (length === n ? undefined : `a frame of type ${type} carries ${n} bytes, not ${length}`);
  switch (type) {
    case MuxFrameType.open:
      return exact(2);
    case MuxFrameType.end:
    case MuxFrameType.ready:
      return exact(0);
    case MuxFrameType.opened:
    case MuxFrameType.window:
      return exact(4);
    case MuxFrameType.ping:
    case MuxFrameType.pong:
      return exact(8);
    case MuxFrameType.reset:
    case MuxFrameType.goaway:
      return length >= 1 && length <= 1 + MUX_MAX_REASON ? undefined : `a closing frame of ${length} bytes`;
    case MuxFrameType.data:
      return length >= 1 && length <= MUX_MAX_DATA ? undefined : `a DATA frame of ${length} bytes`;
    default:
      return `unknown frame type ${type}`;
  }
}

/**
 * Parses a connection's bytes, pushed in chunks cut anywhere, into frames for `sink`. DATA
 * payloads pass through as views of the chunks; control frames are gathered whole (they are
 * small). Throws MuxProtocolError for a frame that breaks the framing rules; after that it
 * must not be pushed to again.
 */
export class MuxFrameReader {
  readonly #sink: MuxFrameSink;
  readonly #head = new Uint8Array(MUX_HEAD_BYTES);
  #headFill = 0;
  /** The frame being read once its head is whole. */
  #type = 0;
  #stream = 0;
  #left = 0;
  #control: Uint8Array | undefined;
  #controlFill = 0;
  #inFrame = false;

  constructor(sink: MuxFrameSink) {
    this.#sink = sink;
  }

  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.byteLength) {
      if (!this.#inFrame) {
        const take = Math.min(MUX_HEAD_BYTES - this.#headFill, chunk.byteLength - at);
        this.#head.set(chunk.subarray(at, at + take), this.#headFill);
        this.#headFill += take;
        at += take;
        if (this.#headFill < MUX_HEAD_BYTES) return;
        this.#startFrame();
        continue;
      }
      const take = Math.min(this.#left, chunk.byteLength - at);
      const piece = chunk.subarray(at, at + take);
      at += take;
      this.#left -= take;
      if (this.#type === MuxFrameType.data) {
        const last = this.#left === 0;
        if (last) this.#inFrame = false;
        this.#sink.data(this.#stream, piece, last);
      } else {
        (this.#control as Uint8Array).set(piece, this.#controlFill);
        this.#controlFill += take;
        if (this.#left === 0) this.#finishControl();
      }
    }
  }

  #startFrame(): void {
    const view = new DataView(this.#head.buffer);
    const type = view.getUint8(0);
    const stream = view.getUint32(1);
    const length = view.getUint32(5);
    this.#headFill = 0;
    const problem = lengthProblem(type, length);
    if (problem) throw new MuxProtocolError(problem);
    if (STREAM_FRAMES.has(type) !== (stream !== 0)) {
      throw new MuxProtocolError(`a frame of type ${type} on stream ${stream}`);
    }
    this.#type = type;
    this.#stream = stream;
    this.#left = length;
    this.#inFrame = true;
    if (type !== MuxFrameType.data) {
      this.#control = new Uint8Array(length);
      this.#controlFill = 0;
      if (length === 0) this.#finishControl();
    }
  }

  #finishControl(): void {
    this.#inFrame = false;
    const payload = this.#control as Uint8Array;
    this.#control = undefined;
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const stream = this.#stream;
    switch (this.#type) {
      case MuxFrameType.open:
        this.#sink.control({ type: MuxFrameType.open, stream, port: view.getUint16(0) });
        return;
      case MuxFrameType.opened: {
        const window = view.getUint32(0);
        if (window === 0 || window > MUX_WINDOW)
          throw new MuxProtocolError(`an OPENED window of ${window} on stream ${stream}`);
        this.#sink.control({ type: MuxFrameType.opened, stream, window });
        return;
      }
      case MuxFrameType.window: {
        const increment = view.getUint32(0);
        if (increment === 0) throw new MuxProtocolError(`a WINDOW of 0 on stream ${stream}`);
        this.#sink.control({ type: MuxFrameType.window, stream, increment });
        return;
      }
      case MuxFrameType.reset:
      case MuxFrameType.goaway: {
        let reason: string;
        try {
          reason = new TextDecoder("utf-8", { fatal: true }).decode(payload.subarray(1));
        } catch {
          throw new MuxProtocolError(`a closing frame on stream ${stream} whose reason is not UTF-8`);
        }
        this.#sink.control({
          type: this.#type as typeof MuxFrameType.reset,
          stream,
          code: CODE_NAMES.get(payload[0] as number),
          reason,
        });
        return;
      }
      case MuxFrameType.ping:
      case MuxFrameType.pong:
        this.#sink.control({ type: this.#type as typeof MuxFrameType.ping, stream: 0, data: payload });
        return;
      default:
        this.#sink.control({ type: this.#type as typeof MuxFrameType.end, stream });
        return;
    }
  }
}
