/**
 * The client's end of the tunnel route (`@sbx/proto`'s port-mux.ts): many connections to ports
 * of one sandbox over one `TunnelChannel`, each as web byte streams. Loaded on first use.
 *
 * Flow control, per connection: what the server sends is queued here and acknowledged with
 * WINDOW as the app reads it, so a connection whose reader is slow stops only its own sender
 * (the channel is always read, as a browser's WebSocket must be); writes wait while the
 * server's window for the connection is used up, and while the channel's own buffer is full.
 *
 * A connection dropped with the channel (or reset by the server) errors its readable and its
 * writable with a TunnelError; a stalled channel is found by pings (no answer within
 * KEEPALIVE_MS after one is sent: the channel is closed and counts as dropped).
 */
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
  muxPath,
  openFrame,
  pingFrame,
  resetFrame,
  windowFrame,
} from "@sbx/proto";
import { AbortedError, ConnectionError, type SandboxError, TunnelError } from "./errors.js";
import { type PortConnection, portConnectError } from "./port-dialer.js";
import type { OpenStreamOptions, OpenTunnelChannel, PortSession, TunnelChannel } from "./port-session.js";

/** A channel silent this long is pinged; one that stays silent as long again is dropped. */
export const KEEPALIVE_MS = 15_000;

interface Stream {
  readonly id: number;
  readonly port: number;
  opened: boolean;
  over: boolean;
  /** Set when the stream ended in error (a RESET, the channel dropping). */
  error: SandboxError | undefined;
  readonly queue: Uint8Array[];
  remoteEnded: boolean;
  localEnded: boolean;
  /** The server's bytes: received, allowed by this side's windows, taken by the app, acknowledged. */
  received: number;
  allowed: number;
  taken: number;
  announced: number;
  /** Bytes this side may send before the server's next WINDOW. */
  credit: number;
  wakeReader: (() => void) | undefined;
  wakeWriter: (() => void) | undefined;
  settleOpen: ((error?: SandboxError) => void) | undefined;
}

export interface MuxSessionRequest {
  readonly endpoint: string;
  readonly token?: string | undefined;
  readonly sandboxId: string;
  readonly signal?: AbortSignal | undefined;
}

/** The route's URL at `endpoint` (which may have a path prefix). */
export function muxUrl(endpoint: string, sandboxId: string): string {
  const url = new URL(endpoint);
  url.pathname = url.pathname.replace(/\/+$/, "") + muxPath(sandboxId);
  url.search = "";
  url.hash = "";
  return url.toString();
}

/** Opens a session: the channel, then the server's READY (or its refusal, as a typed error). */
export async function openMuxSession(openChannel: OpenTunnelChannel, request: MuxSessionRequest): Promise<PortSession> {
  const session = new MuxSession(request.sandboxId);
  const channel = await openChannel(
    { url: muxUrl(request.endpoint, request.sandboxId), token: request.token, signal: request.signal },
    { bytes: (chunk) => session.receive(chunk), closed: (why) => session.dropped(why) },
  );
  await session.start(channel, request.signal);
  return session;
}

class MuxSession implements PortSession, MuxFrameSink {
  readonly #sandboxId: string;
  readonly #reader = new MuxFrameReader(this);
  readonly #streams = new Map<number, Stream>();
  #channel: TunnelChannel | undefined;
  #nextId = 1;
  #ready: ((error?: SandboxError) => void) | undefined;
  #isReady = false;
  #over = false;
  #shuttingDown = false;
  #heard = true;
  #pinged = false;
  #keepalive: ReturnType<typeof setInterval> | undefined;
  #end: (error: SandboxError | undefined) => void = () => {};
  readonly ended: Promise<SandboxError | undefined>;

  constructor(sandboxId: string) {
    this.#sandboxId = sandboxId;
    this.ended = new Promise((resolve) => {
      this.#end = resolve;
    });
  }

  /** Waits for the server's first frame. */
  async start(channel: TunnelChannel, signal: AbortSignal | undefined): Promise<void> {
    this.#channel = channel;
    if (!this.#isReady) {
      await new Promise<void>((resolve, reject) => {
        if (this.#over) {
          void this.ended.then((error) =>
            reject(error ?? new ConnectionError(`${this.#where()}: the connection closed`)),
          );
          return;
        }
        const onAbort = () => this.#abandon(abortedError(signal));
        this.#ready = (error) => {
          this.#ready = undefined;
          signal?.removeEventListener("abort", onAbort);
          if (error) reject(error);
          else resolve();
        };
        if (signal?.aborted) return onAbort();
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
    this.#keepalive = setInterval(() => this.#checkAlive(), KEEPALIVE_MS);
    (this.#keepalive as { unref?: () => void }).unref?.();
  }

  async open(port: number, options: OpenStreamOptions = {}): Promise<PortConnection> {
    const { signal } = options;
    if (signal?.aborted) throw new AbortedError("the operation was aborted", { cause: signal.reason });
    if (this.#over || this.#shuttingDown) {
      throw new TunnelError(`${this.#where(port)}: the tunnel's connection to the server is closed`, { port });
    }
    if (this.#streams.size >= MUX_MAX_STREAMS) {
      throw new TunnelError(`${this.#where(port)}: more than ${MUX_MAX_STREAMS} connections at once`, { port });
    }
    const stream: Stream = {
      id: this.#nextId++,
      port,
      opened: false,
      over: false,
      error: undefined,
      queue: [],
      remoteEnded: false,
      localEnded: false,
      received: 0,
      allowed: MUX_WINDOW,
      taken: 0,
      announced: 0,
      credit: 0,
      wakeReader: undefined,
      wakeWriter: undefined,
      settleOpen: undefined,
    };
    this.#streams.set(stream.id, stream);
    this.#send([openFrame(stream.id, port)]);
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => this.#reset(stream, "closed", "the client gave up", abortedError(signal));
      stream.settleOpen = (error) => {
        stream.settleOpen = undefined;
        signal?.removeEventListener("abort", onAbort);
        if (error) reject(error);
        else resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
    return this.#connection(stream, options.handsOverChunks === true);
  }

  get over(): boolean {
    return this.#over;
  }

  shutdown(): void {
    this.#shuttingDown = true;
    if (this.#streams.size === 0) this.close();
  }

  close(): void {
    this.#abandon(
      undefined,
      (port) => `port ${port} of sandbox ${this.#sandboxId}: the tunnel's connection to the server is closed`,
    );
  }

  // ---- from the channel ----

  receive(chunk: Uint8Array): void {
    if (this.#over) return;
    this.#heard = true;
    try {
      this.#reader.push(chunk);
    } catch (error) {
      if (!(error instanceof MuxProtocolError)) throw error;
      this.#send([goawayFrame("protocol", error.message)]);
      this.#abandon(new TunnelError(`${this.#where()}: the server broke the tunnel protocol: ${error.message}`));
    }
  }

  dropped(why: string): void {
    if (this.#over) return;
    if (!this.#isReady) {
      this.#finish(
        new ConnectionError(
          `${this.#where()}: the server closed the connection before it was ready (${why}); is the endpoint an sbx server that serves tunnels?`,
        ),
      );
      return;
    }
    const message = `the connection to the server dropped (${why})`;
    this.#finish(
      new TunnelError(`${this.#where()}: ${message}`),
      (port) => `port ${port} of sandbox ${this.#sandboxId}: ${message}`,
    );
  }

  data(id: number, piece: Uint8Array): void {
    const stream = this.#streams.get(id);
    if (!stream) {
      if (id >= this.#nextId) throw new MuxProtocolError(`DATA on stream ${id}, which was never opened`);
      return;
    }
    if (!stream.opened || stream.remoteEnded) {
      this.#reset(stream, "protocol", `DATA on stream ${id} ${stream.opened ? "after its END" : "before OPENED"}`);
      return;
    }
    stream.received += piece.byteLength;
    if (stream.received > stream.allowed) {
      this.#reset(stream, "protocol", `stream ${id} sent past its window`);
      return;
    }
    stream.queue.push(piece);
    wake(stream, "reader");
  }

  control(frame: MuxControlFrame): void {
    if (!this.#isReady) {
      if (frame.type === MuxFrameType.ready) {
        this.#isReady = true;
        this.#ready?.();
        return;
      }
      if (frame.type === MuxFrameType.goaway) {
        this.#goneAway(frame.code, frame.reason);
        return;
      }
      throw new MuxProtocolError(`a frame of type ${frame.type} before READY`);
    }
    const stream = frame.stream === 0 ? undefined : this.#streams.get(frame.stream);
    switch (frame.type) {
      case MuxFrameType.opened:
        if (!stream || stream.opened) return;
        stream.opened = true;
        stream.credit = frame.window;
        stream.settleOpen?.();
        return;
      case MuxFrameType.window:
        if (!stream) return;
        stream.credit += frame.increment;
        wake(stream, "writer");
        return;
      case MuxFrameType.end:
        if (!stream?.opened) return;
        stream.remoteEnded = true;
        wake(stream, "reader");
        this.#finishIfDone(stream);
        return;
      case MuxFrameType.reset:
        if (!stream) return;
        this.#ended(stream, portConnectError(frame.code ?? "closed", frame.reason, stream.port));
        return;
      case MuxFrameType.goaway:
        this.#goneAway(frame.code, frame.reason);
        return;
      case MuxFrameType.ping:
        // Answered only while the channel has room: a server that pings without reading the
        // answers does not grow this side's queue (it goes unanswered instead).
        if (this.#channel?.drained() !== undefined) return;
        this.#send([pingFrame(MuxFrameType.pong, frame.data)]);
        return;
      case MuxFrameType.pong:
        return;
      default:
        throw new MuxProtocolError(`a server does not send frames of type ${frame.type}`);
    }
  }

  // ---- connections ----

  #connection(stream: Stream, handsOverChunks: boolean): PortConnection {
    const readable = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          for (;;) {
            const chunk = stream.queue.shift();
            if (chunk) {
              controller.enqueue(chunk);
              stream.taken += chunk.byteLength;
              if (stream.taken - stream.announced >= MUX_WINDOW_UPDATE && !stream.over && !stream.remoteEnded) {
                const increment = stream.taken - stream.announced;
                stream.announced = stream.taken;
                stream.allowed += increment;
                this.#send([windowFrame(stream.id, increment)]);
              }
              return;
            }
            if (stream.remoteEnded) return controller.close();
            if (stream.error) return controller.error(stream.error);
            await new Promise<void>((resolve) => {
              stream.wakeReader = resolve;
            });
          }
        },
        cancel: () => this.#reset(stream, "closed", "the client closed the connection"),
      },
      { highWaterMark: 0 },
    );
    const copy = !handsOverChunks && this.#channel?.keepsParts === true;
    const writable = new WritableStream<Uint8Array>({
      write: async (chunk) => {
        if (!(chunk instanceof Uint8Array)) throw new TypeError("a port connection's writable takes Uint8Array chunks");
        for (let at = 0; at < chunk.byteLength; ) {
          if (stream.over || stream.localEnded) throw this.#closedError(stream);
          if (stream.credit === 0) {
            await new Promise<void>((resolve) => {
              stream.wakeWriter = resolve;
            });
            continue;
          }
          const drained = this.#channel?.drained();
          if (drained) {
            await drained;
            continue;
          }
          const n = Math.min(chunk.byteLength - at, stream.credit, MUX_MAX_DATA);
          const piece = chunk.subarray(at, at + n);
          this.#send([dataHead(stream.id, n), copy ? piece.slice() : piece]);
          stream.credit -= n;
          at += n;
        }
      },
      close: () => {
        if (stream.localEnded) return;
        if (stream.over) {
          if (stream.error) throw stream.error;
          return;
        }
        stream.localEnded = true;
        this.#send([endFrame(stream.id)]);
        this.#finishIfDone(stream);
      },
      abort: () => this.#reset(stream, "closed", "the client closed the connection"),
    });
    return { readable, writable };
  }

  #closedError(stream: Stream): SandboxError {
    return (
      stream.error ?? new TunnelError(`${this.#where(stream.port)}: the connection is closed`, { port: stream.port })
    );
  }

  #finishIfDone(stream: Stream): void {
    if (stream.localEnded && stream.remoteEnded) this.#remove(stream);
  }

  /** Ends `stream` from this side: RESET to the server, `error` (or a TunnelError) to its streams. */
  #reset(stream: Stream, code: MuxCode, reason: string, error?: SandboxError): void {
    if (stream.over) return;
    this.#send([resetFrame(stream.id, code, reason)]);
    this.#ended(stream, error ?? new TunnelError(`${this.#where(stream.port)}: ${reason}`, { port: stream.port }));
  }

  /** `stream` is over with `error`: its open (if pending) rejects, its streams error once read. */
  #ended(stream: Stream, error: SandboxError): void {
    if (stream.over) return;
    stream.error = error;
    this.#remove(stream);
    stream.settleOpen?.(error);
    wake(stream, "reader");
    wake(stream, "writer");
  }

  #remove(stream: Stream): void {
    stream.over = true;
    this.#streams.delete(stream.id);
    if (this.#shuttingDown && this.#streams.size === 0) this.close();
  }

  // ---- the session ----

  #goneAway(code: MuxCode | undefined, reason: string): void {
    this.#abandon(portConnectError(code ?? "closed", reason));
  }

  #checkAlive(): void {
    if (this.#heard) {
      this.#heard = false;
      this.#pinged = false;
      return;
    }
    if (!this.#pinged) {
      this.#pinged = true;
      this.#send([pingFrame(MuxFrameType.ping, new Uint8Array(8))]);
      return;
    }
    this.#channel?.close();
    this.dropped(`no answer to a ping within ${KEEPALIVE_MS / 1000} s`);
  }

  #send(parts: readonly Uint8Array[]): void {
    if (!this.#over) this.#channel?.send(parts);
  }

  /** Closes the channel from this side and ends the session. */
  #abandon(error: SandboxError | undefined, streamMessage?: (port: number) => string): void {
    if (this.#over) return;
    this.#channel?.close();
    this.#finish(error, streamMessage);
  }

  /**
   * Ends the session: its connections end with `error`, or with a TunnelError naming their
   * port that `streamMessage` words; `ended` settles with `error`.
   */
  #finish(error: SandboxError | undefined, streamMessage?: (port: number) => string): void {
    if (this.#over) return;
    this.#over = true;
    clearInterval(this.#keepalive);
    this.#ready?.(error ?? new ConnectionError(`${this.#where()}: the connection closed`));
    for (const stream of [...this.#streams.values()]) {
      const port = stream.port;
      this.#ended(
        stream,
        streamMessage
          ? new TunnelError(streamMessage(port), { port, ...(error ? { cause: error } : {}) })
          : (error ?? new TunnelError(`${this.#where(port)}: the connection is closed`, { port })),
      );
    }
    this.#end(error);
  }

  #where(port?: number): string {
    return port === undefined
      ? `the tunnel to sandbox ${this.#sandboxId}`
      : `port ${port} of sandbox ${this.#sandboxId}`;
  }
}

function wake(stream: Stream, which: "reader" | "writer"): void {
  const key = which === "reader" ? "wakeReader" : "wakeWriter";
  const resolve = stream[key];
  stream[key] = undefined;
  resolve?.();
}

function abortedError(signal: AbortSignal | undefined): SandboxError {
  return new AbortedError("the operation was aborted", { cause: signal?.reason });
}
