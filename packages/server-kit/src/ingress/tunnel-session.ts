/**
 * The server's end of one tunnel connection (Node; the contract is `@sbx/proto`'s port-mux.ts):
 * many streams, each a TCP connection to a port of one sandbox dialed through the target's
 * `IngressDialer`, over one channel (a WebSocket or an upgraded socket: tunnel-route.ts).
 *
 * Flow control, per stream: the port's bytes go out as DATA while the client's window for the
 * stream has room, and the port's connection is paused (only that one) while it has none or
 * while the channel's own buffer is full; the client's bytes are written to the port's
 * connection as they come (the channel is always read) and acknowledged with WINDOW once the
 * connection has taken them, so a port that does not read stops only its own stream's sender.
 *
 * A stream is over once both sides have ended (END each way), or on RESET either way. When the
 * port's app ends its side and then closes, the stream stays until the client ends too; bytes
 * the client sends after that reset the stream, as TCP would answer them.
 */
import type { Duplex } from "node:stream";
import {
  dataHead,
  endFrame,
  goawayFrame,
  MUX_MAX_DATA,
  MUX_MAX_STREAMS,
  MUX_WINDOW,
  MUX_WINDOW_UPDATE,
  type MuxCode,
  type MuxControlFrame,
  MuxFrameReader,
  type MuxFrameSink,
  MuxFrameType,
  MuxProtocolError,
  openedFrame,
  pingFrame,
  readyFrame,
  resetFrame,
  windowFrame,
} from "@sbx/proto";
import type { Engine } from "../engine/engine.js";
import { portConnectProblem } from "../engine/port-connect-check.js";
import { IngressDialError, type IngressDialer } from "./gateway.js";

/** The server's end of the connection a session runs over. */
export interface TunnelChannel {
  /** Sends bytes, in order (parts of frames, or several). */
  send(parts: readonly Uint8Array[]): void;
  /** More is queued than the channel's mark: stop adding until `onDrain`. */
  readonly full: boolean;
  /** Called whenever the channel has room again after being full. */
  onDrain(listener: () => void): void;
  /** Ends the connection once what was sent has gone (and drops it a moment later regardless). */
  close(): void;
}

export interface TunnelSessionOptions {
  readonly engine: Engine;
  readonly dialer: IngressDialer;
  readonly sandboxId: string;
  /** Told of a failure that is neither the client's nor the port's (a dialer bug). */
  readonly onError?: ((error: unknown) => void) | undefined;
}

interface Stream {
  readonly id: number;
  readonly port: number;
  upstream: Duplex | undefined;
  /** Bytes the client lets this side send before its next WINDOW. */
  credit: number;
  /** Port bytes waiting for credit (the connection is paused meanwhile). */
  pending: Uint8Array | undefined;
  paused: boolean;
  /** The port's side ended (its "end"); END is sent once `pending` is. */
  portEnded: boolean;
  endSent: boolean;
  /** The port's connection is closed, after ending gracefully. */
  portGone: boolean;
  clientEnded: boolean;
  /** The client's bytes: received, taken by the port's connection, acknowledged with WINDOW. */
  received: number;
  allowed: number;
  taken: number;
  announced: number;
  over: boolean;
}

export class TunnelSession implements MuxFrameSink {
  readonly #channel: TunnelChannel;
  readonly #options: TunnelSessionOptions;
  readonly #reader = new MuxFrameReader(this);
  readonly #streams = new Map<number, Stream>();
  #lastId = 0;
  #ended = false;

  constructor(channel: TunnelChannel, options: TunnelSessionOptions) {
    this.#channel = channel;
    this.#options = options;
    channel.onDrain(() => {
      for (const stream of this.#streams.values()) this.#flush(stream);
    });
  }

  /** Tells the client the connection is usable. */
  start(): void {
    this.#channel.send([readyFrame()]);
  }

  /** Bytes from the client. */
  receive(chunk: Uint8Array): void {
    if (this.#ended) return;
    try {
      this.#reader.push(chunk);
    } catch (error) {
      if (error instanceof MuxProtocolError) this.goAway("protocol", error.message);
      else {
        this.#options.onError?.(error);
        this.goAway("internal", "the server failed");
      }
    }
  }

  /** Ends the connection with GOAWAY, and every stream on it. */
  goAway(code: MuxCode, reason: string): void {
    if (this.#ended) return;
    this.#channel.send([goawayFrame(code, reason)]);
    this.#channel.close();
    this.closed();
  }

  /** The channel is gone: every stream's connection to its port goes too. */
  closed(): void {
    this.#ended = true;
    for (const stream of this.#streams.values()) {
      stream.over = true;
      stream.upstream?.destroy();
    }
    this.#streams.clear();
  }

  data(id: number, piece: Uint8Array): void {
    const stream = this.#streams.get(id);
    if (!stream) {
      if (id > this.#lastId) throw new MuxProtocolError(`DATA on stream ${id}, which was never opened`);
      return; // a stream that is over: the bytes crossed its end
    }
    if (!stream.upstream) {
      this.#reset(stream, "protocol", `DATA on stream ${id} before it was OPENED`);
      return;
    }
    if (stream.clientEnded) {
      this.#reset(stream, "protocol", `DATA on stream ${id} after its END`);
      return;
    }
    if (stream.portGone) {
      this.#reset(stream, "closed", `port ${stream.port} of sandbox ${this.#options.sandboxId} closed the connection`);
      return;
    }
    stream.received += piece.byteLength;
    if (stream.received > stream.allowed) {
      this.#reset(stream, "protocol", `stream ${id} sent past its window`);
      return;
    }
    const upstream = stream.upstream;
    upstream.write(piece, (error) => {
      if (error || stream.over) return;
      stream.taken += piece.byteLength;
      if (stream.taken - stream.announced >= MUX_WINDOW_UPDATE) {
        const increment = stream.taken - stream.announced;
        stream.announced = stream.taken;
        stream.allowed += increment;
        this.#channel.send([windowFrame(id, increment)]);
      }
    });
  }

  control(frame: MuxControlFrame): void {
    switch (frame.type) {
      case MuxFrameType.open:
        this.#open(frame.stream, frame.port);
        return;
      case MuxFrameType.window: {
        const stream = this.#streams.get(frame.stream);
        if (!stream) return;
        stream.credit += frame.increment;
        if (stream.credit > 2 ** 31) {
          this.#reset(stream, "protocol", `stream ${stream.id}'s window overflowed`);
          return;
        }
        this.#flush(stream);
        return;
      }
      case MuxFrameType.end: {
        const stream = this.#streams.get(frame.stream);
        if (!stream || stream.clientEnded) return;
        if (!stream.upstream) {
          this.#reset(stream, "protocol", `END on stream ${stream.id} before it was OPENED`);
          return;
        }
        stream.clientEnded = true;
        if (!stream.portGone) stream.upstream.end();
        this.#finishIfDone(stream);
        return;
      }
      case MuxFrameType.reset: {
        const stream = this.#streams.get(frame.stream);
        if (!stream) return;
        this.#remove(stream);
        const upstream = stream.upstream as (Duplex & { resetAndDestroy?: () => void }) | undefined;
        if (upstream?.resetAndDestroy) upstream.resetAndDestroy();
        else upstream?.destroy();
        return;
      }
      case MuxFrameType.ping:
        this.#channel.send([pingFrame(MuxFrameType.pong, frame.data)]);
        return;
      case MuxFrameType.pong:
        return;
      case MuxFrameType.goaway:
        this.#channel.close();
        this.closed();
        return;
      default:
        throw new MuxProtocolError(`a client does not send frames of type ${frame.type}`);
    }
  }

  #open(id: number, port: number): void {
    if (id <= this.#lastId) throw new MuxProtocolError(`stream ${id} opened after stream ${this.#lastId}`);
    this.#lastId = id;
    const sandboxId = this.#options.sandboxId;
    if (this.#streams.size >= MUX_MAX_STREAMS) {
      this.#channel.send([resetFrame(id, "limit", `more than ${MUX_MAX_STREAMS} connections at once on one tunnel`)]);
      return;
    }
    const problem = portConnectProblem(this.#options.engine, sandboxId, port);
    if (problem) {
      this.#channel.send([resetFrame(id, problem.refusal, problem.message)]);
      return;
    }
    const stream: Stream = {
      id,
      port,
      upstream: undefined,
      credit: MUX_WINDOW,
      pending: undefined,
      paused: false,
      portEnded: false,
      endSent: false,
      portGone: false,
      clientEnded: false,
      received: 0,
      allowed: MUX_WINDOW,
      taken: 0,
      announced: 0,
      over: false,
    };
    this.#streams.set(id, stream);
    this.#options.dialer.dial(sandboxId, port).then(
      (upstream) => this.#opened(stream, upstream),
      (error: unknown) => {
        if (stream.over) return;
        if (error instanceof IngressDialError) {
          return this.#reset(stream, error.reason === "refused" ? "refused" : "unsupported", error.message);
        }
        this.#options.onError?.(error);
        this.#reset(stream, "internal", `port ${port} of sandbox ${sandboxId} could not be dialed`);
      },
    );
  }

  #opened(stream: Stream, upstream: Duplex): void {
    if (stream.over) {
      upstream.destroy();
      return;
    }
    stream.upstream = upstream;
    this.#channel.send([openedFrame(stream.id)]);
    upstream.on("data", (chunk: Uint8Array) => {
      if (stream.over) return;
      this.#sendData(stream, chunk);
    });
    upstream.on("end", () => {
      stream.portEnded = true;
      this.#flush(stream);
    });
    upstream.on("error", () => {});
    upstream.on("close", () => {
      if (stream.over) return;
      if (stream.portEnded) {
        stream.portGone = true;
        return this.#finishIfDone(stream);
      }
      this.#reset(
        stream,
        "closed",
        `port ${stream.port} of sandbox ${this.#options.sandboxId}: the connection was closed by the port's side`,
      );
    });
  }

  /** Sends what credit allows of `chunk`; the rest waits in `pending`, the port's side paused. */
  #sendData(stream: Stream, chunk: Uint8Array): void {
    let rest = chunk;
    while (rest.byteLength > 0 && stream.credit > 0) {
      const n = Math.min(rest.byteLength, stream.credit, MUX_MAX_DATA);
      this.#channel.send([dataHead(stream.id, n), rest.subarray(0, n)]);
      stream.credit -= n;
      rest = rest.subarray(n);
    }
    stream.pending = rest.byteLength > 0 ? rest : undefined;
    if ((stream.pending || this.#channel.full) && !stream.paused) {
      stream.paused = true;
      stream.upstream?.pause();
    }
  }

  /** Sends what waited for credit (and a deferred END), and lets the port's side go on if it may. */
  #flush(stream: Stream): void {
    if (stream.over) return;
    if (stream.pending) this.#sendData(stream, stream.pending);
    if (stream.pending) return;
    if (stream.portEnded && !stream.endSent) {
      stream.endSent = true;
      this.#channel.send([endFrame(stream.id)]);
      this.#finishIfDone(stream);
      return;
    }
    if (stream.paused && stream.credit > 0 && !this.#channel.full) {
      stream.paused = false;
      stream.upstream?.resume();
    }
  }

  #finishIfDone(stream: Stream): void {
    if (stream.endSent && stream.clientEnded) this.#remove(stream);
  }

  #reset(stream: Stream, code: MuxCode, reason: string): void {
    if (stream.over) return;
    this.#remove(stream);
    this.#channel.send([resetFrame(stream.id, code, reason)]);
    stream.upstream?.destroy();
  }

  #remove(stream: Stream): void {
    stream.over = true;
    this.#streams.delete(stream.id);
  }
}
