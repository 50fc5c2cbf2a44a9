/**
 * The server's end of one tunnel connection (Node; the contract is `@sbx/proto`'s port-mux.ts):
 * many streams, each a TCP connection to a port of one sandbox dialed through the target's
 * `IngressDialer`, over one channel (a WebSocket or an upgraded socket: tunnel-route.ts).
 *
 * Flow control, per stream: the port's bytes go out as DATA while the client's window for the
 * stream has room and the channel's queue is under its mark; the port's connection is paused
 * (only that one) otherwise. The client's bytes are written to the port's connection as they
 * come and acknowledged with WINDOW once the connection has taken them (and is not waiting to
 * drain), so a port that does not read stops only its own stream's sender. The windows granted
 * share a budget per connection and one across the route (`TunnelBudget`): with many streams
 * open each gets less, never less than a floor.
 *
 * What a client can make the server hold is bounded (tunnel-budget.ts): streams per connection
 * and over the route (a stream counts from OPEN until its dial has settled and its connection
 * is gone), dials in flight (each with a timeout, aborted when its stream or the session ends),
 * and the bytes queued toward the client: past a mark the channel is no longer read, past a cap
 * the connection ends, and at most one PONG waits to go at a time.
 *
 * A stream is over once both sides have ended (END each way), or on RESET either way. When the
 * port's app ends its side and then closes, the stream stays until the client ends too; bytes
 * the client sends after that reset the stream, as TCP would answer them. When the sandbox ends,
 * the connection ends with it (GOAWAY "notRunning").
 *
 * The sbx server's local runtime serves plain-upgrade connections in its tunnel relay instead
 * (tunnel-route.ts `handOff`; packages/server/agent/relay_mux.go), which does what this does
 * frame for frame: a change here is a change there.
 */
import type { Duplex } from "node:stream";
import {
  dataHead,
  endFrame,
  goawayFrame,
  MUX_MAX_DATA,
  MUX_WINDOW,
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
import type { TunnelBudget } from "./tunnel-budget.js";

/** The server's end of the connection a session runs over. */
export interface TunnelChannel {
  /** Sends bytes, in order (parts of frames, or several); `sent` once they have left this process. */
  send(parts: readonly Uint8Array[], sent?: () => void): void;
  /** Bytes sent and not yet gone. */
  readonly queued: number;
  /** Called whenever the queue has emptied (or fallen under the mark) after being over the mark. */
  onDrain(listener: () => void): void;
  /** Stops reading the client's bytes, until `resumeReading`. */
  pauseReading(): void;
  resumeReading(): void;
  /** Ends the connection once what was sent has gone (and drops it a moment later regardless). */
  close(): void;
}

export interface TunnelSessionOptions {
  readonly engine: Engine;
  readonly dialer: IngressDialer;
  readonly sandboxId: string;
  /** The route's budget, shared by all its sessions. */
  readonly budget: TunnelBudget;
  /** Told of a failure that is neither the client's nor the port's (a dialer bug). */
  readonly onError?: ((error: unknown) => void) | undefined;
}

interface Stream {
  readonly id: number;
  readonly port: number;
  upstream: Duplex | undefined;
  /** Aborts the dial (its stream reset, the session over, the timeout); undefined once it settled. */
  dialing: AbortController | undefined;
  /** The stream's slot (per connection and route-wide) is given back. */
  released: boolean;
  /** Bytes the client lets this side send before its next WINDOW. */
  credit: number;
  /** Port bytes waiting for credit or room (the connection is paused meanwhile). */
  pending: Uint8Array | undefined;
  paused: boolean;
  /** The port's side ended (its "end"); END is sent once `pending` is. */
  portEnded: boolean;
  endSent: boolean;
  /** The port's connection is closed, after ending gracefully. */
  portGone: boolean;
  clientEnded: boolean;
  /** The client's bytes: received, allowed by this side's windows, taken by the port's connection. */
  received: number;
  allowed: number;
  taken: number;
  /** `allowed - taken` as counted in the budgets. */
  held: number;
  /** Waiting for the port's connection to drain before granting more. */
  awaitingDrain: boolean;
  over: boolean;
}

export class TunnelSession implements MuxFrameSink {
  readonly #channel: TunnelChannel;
  readonly #options: TunnelSessionOptions;
  readonly #budget: TunnelBudget;
  readonly #reader = new MuxFrameReader(this);
  readonly #streams = new Map<number, Stream>();
  /** Aborted when the session ends. */
  readonly #life = new AbortController();
  #lastId = 0;
  #ended = false;
  /** Streams holding a slot: in `#streams`, or over while their dial has not settled. */
  #slots = 0;
  /** Window bytes this connection's streams hold. */
  #held = 0;
  #pongQueued = false;
  #readingPaused = false;

  constructor(channel: TunnelChannel, options: TunnelSessionOptions) {
    this.#channel = channel;
    this.#options = options;
    this.#budget = options.budget;
    channel.onDrain(() => {
      if (this.#ended) return;
      if (this.#readingPaused && channel.queued < this.#budget.limits.queueHighWater) {
        this.#readingPaused = false;
        channel.resumeReading();
      }
      for (const stream of this.#streams.values()) this.#flush(stream);
    });
  }

  /** Tells the client the connection is usable, and ends it when the sandbox ends. */
  start(): void {
    this.#channel.send([readyFrame()]);
    const sandbox = this.#options.engine.sandboxes.get(this.#options.sandboxId);
    if (!sandbox) return;
    void sandbox.ended.wait(undefined, this.#life.signal).then(() => {
      if (!this.#ended && !sandbox.running) {
        this.goAway("notRunning", `sandbox ${this.#options.sandboxId} has finished`);
      }
    });
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
      return;
    }
    this.#checkQueue();
  }

  /** Ends the connection with GOAWAY, and every stream on it. */
  goAway(code: MuxCode, reason: string): void {
    if (this.#ended) return;
    this.#channel.send([goawayFrame(code, reason)]);
    this.#channel.close();
    this.closed();
  }

  /** The channel is gone: every stream's connection to its port goes too, dials are aborted. */
  closed(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#life.abort();
    for (const stream of [...this.#streams.values()]) {
      this.#remove(stream);
      stream.dialing?.abort();
      stream.upstream?.destroy();
    }
  }

  data(id: number, piece: Uint8Array): void {
    if (this.#ended) return;
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
    stream.upstream.write(piece, (error) => {
      if (error || stream.over) return;
      stream.taken += piece.byteLength;
      this.#hold(stream, stream.allowed - stream.taken);
      this.#grant(stream);
    });
  }

  control(frame: MuxControlFrame): void {
    if (this.#ended) return;
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
        stream.dialing?.abort();
        const upstream = stream.upstream as (Duplex & { resetAndDestroy?: () => void }) | undefined;
        if (upstream?.resetAndDestroy) upstream.resetAndDestroy();
        else upstream?.destroy();
        return;
      }
      case MuxFrameType.ping:
        // One answer waits to go at a time: a client that pings without reading gets no more.
        if (this.#pongQueued) return;
        this.#pongQueued = true;
        this.#channel.send([pingFrame(MuxFrameType.pong, frame.data)], () => {
          this.#pongQueued = false;
        });
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
    const budget = this.#budget;
    const limits = budget.limits;
    const refusal =
      this.#slots >= limits.streamsPerConnection
        ? `more than ${limits.streamsPerConnection} connections at once on one tunnel`
        : budget.streams >= limits.streams
          ? `the server holds ${limits.streams} tunnel connections already`
          : budget.dials >= limits.dials
            ? `the server is opening ${limits.dials} tunnel connections already`
            : undefined;
    if (refusal) {
      this.#send([resetFrame(id, "limit", refusal)]);
      return;
    }
    const problem = portConnectProblem(this.#options.engine, sandboxId, port);
    if (problem) {
      this.#send([resetFrame(id, problem.refusal, problem.message)]);
      return;
    }
    const dialing = new AbortController();
    const stream: Stream = {
      id,
      port,
      upstream: undefined,
      dialing,
      released: false,
      credit: MUX_WINDOW,
      pending: undefined,
      paused: false,
      portEnded: false,
      endSent: false,
      portGone: false,
      clientEnded: false,
      received: 0,
      allowed: 0,
      taken: 0,
      held: 0,
      awaitingDrain: false,
      over: false,
    };
    this.#streams.set(id, stream);
    this.#slots++;
    budget.streams++;
    budget.dials++;
    const timeout = AbortSignal.timeout(limits.dialTimeoutMs);
    const signal = AbortSignal.any([dialing.signal, timeout]);
    const settled = () => {
      stream.dialing = undefined;
      budget.dials--;
    };
    let dial: Promise<Duplex>;
    try {
      dial = this.#options.dialer.dial(sandboxId, port, signal);
    } catch (error) {
      dial = Promise.reject(error);
    }
    dial.then(
      (upstream) => {
        settled();
        this.#opened(stream, upstream);
      },
      (error: unknown) => {
        settled();
        if (stream.over) return this.#release(stream);
        if (timeout.aborted) {
          return this.#reset(
            stream,
            "refused",
            `port ${port} of sandbox ${sandboxId} did not answer within ${limits.dialTimeoutMs / 1000} s`,
          );
        }
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
      this.#release(stream);
      return;
    }
    stream.upstream = upstream;
    const window = this.#window(stream);
    stream.allowed = window;
    this.#hold(stream, window);
    this.#send([openedFrame(stream.id, window)]);
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

  /**
   * The window `stream` may hold now: the connection's budget shared by its streams (at most
   * MUX_WINDOW each), within what the connection's and the route's budgets have left, and
   * never under the floor.
   */
  #window(stream: Stream): number {
    const limits = this.#budget.limits;
    const floor = Math.min(limits.minStreamWindow, MUX_WINDOW);
    const fair = Math.floor(limits.windowBytesPerConnection / Math.max(1, this.#streams.size));
    const room =
      Math.min(limits.windowBytesPerConnection - this.#held, limits.windowBytes - this.#budget.windowBytes) +
      stream.held;
    return Math.max(floor, Math.min(MUX_WINDOW, fair, room));
  }

  /** Grants the client more of `stream` once its port's connection has taken enough and drains. */
  #grant(stream: Stream): void {
    if (stream.over || stream.clientEnded || stream.awaitingDrain) return;
    const upstream = stream.upstream as Duplex;
    if (upstream.writableNeedDrain) {
      stream.awaitingDrain = true;
      upstream.once("drain", () => {
        stream.awaitingDrain = false;
        this.#grant(stream);
      });
      return;
    }
    const window = this.#window(stream);
    const increment = stream.taken + window - stream.allowed;
    if (increment < Math.max(1, window / 4)) return;
    stream.allowed += increment;
    this.#hold(stream, stream.allowed - stream.taken);
    this.#send([windowFrame(stream.id, increment)]);
  }

  /** Counts `held` window bytes for `stream` in the connection's and the route's budgets. */
  #hold(stream: Stream, held: number): void {
    const delta = held - stream.held;
    stream.held = held;
    this.#held += delta;
    this.#budget.windowBytes += delta;
  }

  /** Sends what credit and the channel's room allow of `chunk`; the rest waits in `pending`, the port's side paused. */
  #sendData(stream: Stream, chunk: Uint8Array): void {
    let rest = chunk;
    while (rest.byteLength > 0 && stream.credit > 0 && !this.#full()) {
      const n = Math.min(rest.byteLength, stream.credit, MUX_MAX_DATA);
      this.#channel.send([dataHead(stream.id, n), rest.subarray(0, n)]);
      stream.credit -= n;
      rest = rest.subarray(n);
    }
    stream.pending = rest.byteLength > 0 ? rest : undefined;
    if ((stream.pending || this.#full()) && !stream.paused) {
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
      this.#send([endFrame(stream.id)]);
      this.#finishIfDone(stream);
      return;
    }
    if (stream.paused && stream.credit > 0 && !this.#full()) {
      stream.paused = false;
      stream.upstream?.resume();
    }
  }

  /** The channel's queue is at its mark: ports' bytes wait. */
  #full(): boolean {
    return this.#channel.queued >= this.#budget.limits.queueHighWater;
  }

  /** A control frame toward the client, and the queue checked. */
  #send(parts: readonly Uint8Array[]): void {
    this.#channel.send(parts);
    this.#checkQueue();
  }

  /**
   * Replies pile up toward a client that does not read them: past twice the mark (ports'
   * bytes alone stop at the mark) its connection is no longer read; past the cap it ends.
   */
  #checkQueue(): void {
    if (this.#ended) return;
    const queued = this.#channel.queued;
    const limits = this.#budget.limits;
    if (queued > limits.maxQueuedBytes) {
      this.goAway("limit", "the client does not read what the server sends");
      return;
    }
    if (queued >= 2 * limits.queueHighWater && !this.#readingPaused) {
      this.#readingPaused = true;
      this.#channel.pauseReading();
    }
  }

  #finishIfDone(stream: Stream): void {
    if (stream.endSent && stream.clientEnded) this.#remove(stream);
  }

  #reset(stream: Stream, code: MuxCode, reason: string): void {
    if (stream.over) return;
    this.#remove(stream);
    stream.dialing?.abort();
    this.#send([resetFrame(stream.id, code, reason)]);
    stream.upstream?.destroy();
  }

  #remove(stream: Stream): void {
    if (stream.over) return;
    stream.over = true;
    this.#streams.delete(stream.id);
    this.#hold(stream, 0);
    if (!stream.dialing) this.#release(stream);
  }

  /** Gives back the stream's slot: it holds no descriptor, nor a dial, any more. */
  #release(stream: Stream): void {
    if (stream.released) return;
    stream.released = true;
    this.#slots--;
    this.#budget.streams--;
  }
}
