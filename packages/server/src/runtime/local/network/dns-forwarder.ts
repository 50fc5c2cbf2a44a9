/**
 * The sandboxes' DNS: a small forwarder on their gateway address (UDP and TCP port 53) that
 * passes queries to the host's resolvers and their answers back. Everything from a sandbox is
 * hostile: a query is relayed only from a sandbox allowed DNS (not blocked), only when it looks
 * like a standard query (a header, QR clear, opcode QUERY, at most 4 KiB), and a sandbox has a
 * bounded number of queries in flight and TCP connections open; an answer is relayed only when
 * it comes from the resolver asked and matches the query's id. Nothing of a query is parsed
 * further: the resolver does that. Over TCP a connection's next query is read only once the
 * last answer is sent (handed to the kernel): a sandbox that does not read its answers holds
 * at most one answer of the server's memory per connection, and is closed once idle.
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { connect, createServer, type Server, type Socket as TcpSocket } from "node:net";
import type { Upstream } from "./network-options.js";

/** Largest query relayed (EDNS's usual payload size); answers may be up to 64 KiB. */
const MAX_QUERY_BYTES = 4096;
const MAX_ANSWER_BYTES = 65_535;
/** Answer bytes one TCP connection may have waiting in the server: one answer, framed (more closes it). */
const MAX_QUEUED_BYTES = 2 + MAX_ANSWER_BYTES;

/**
 * The forwarder's limits. The global ones are shared fairly: once several sandboxes use the
 * forwarder, none may hold more than its share of them (the total over the sandboxes using it
 * and one more), so a few busy sandboxes always leave room for another.
 */
export interface DnsLimits {
  /** Queries of one sandbox waiting for an answer, and of all sandboxes together. */
  readonly inFlightPerSource: number;
  readonly inFlight: number;
  /** TCP connections one sandbox may hold open, and all together. */
  readonly tcpPerSource: number;
  readonly tcp: number;
  /** How long one resolver has to answer, and a TCP connection may stay idle. */
  readonly upstreamTimeoutMs: number;
  readonly tcpIdleMs: number;
}

export const DNS_LIMITS: DnsLimits = Object.freeze({
  inFlightPerSource: 64,
  inFlight: 4096,
  tcpPerSource: 8,
  tcp: 512,
  upstreamTimeoutMs: 3000,
  tcpIdleMs: 10_000,
});

export interface DnsForwarderOptions {
  /** The address to listen on (the sandboxes' gateway; local to the host). */
  readonly address: string;
  readonly port?: number;
  readonly upstreams: readonly Upstream[];
  /** Whether a query from `source` may be relayed (a sandbox's address, not blocked). */
  allowed(source: string): boolean;
  /** DNS_LIMITS, but for these (tests). */
  readonly limits?: Partial<DnsLimits>;
}

/** What the forwarder holds, for tests. */
export interface DnsForwarderStats {
  /** The most answer bytes one TCP connection ever had waiting to be sent (in the server's memory). */
  readonly maxQueuedBytes: number;
  /** TCP connections open now. */
  readonly tcpConnections: number;
  /** Queries waiting for an answer now. */
  readonly inFlight: number;
  /** Datagrams received, whatever became of them. */
  readonly datagrams: number;
}

export class DnsForwarder {
  readonly #options: DnsForwarderOptions;
  readonly #limits: DnsLimits;
  readonly #udp: Socket;
  readonly #tcp: Server;
  readonly #inFlight = new Map<string, number>();
  #total = 0;
  readonly #connections = new Map<string, Set<TcpSocket>>();
  #tcpTotal = 0;
  #maxQueuedBytes = 0;
  #datagrams = 0;
  #closed = false;

  private constructor(options: DnsForwarderOptions, udp: Socket, tcp: Server) {
    this.#options = options;
    this.#limits = { ...DNS_LIMITS, ...options.limits };
    this.#udp = udp;
    this.#tcp = tcp;
  }

  static async start(options: DnsForwarderOptions): Promise<DnsForwarder> {
    const port = options.port ?? 53;
    const udp = createSocket({ type: "udp4" });
    const tcp = createServer({ pauseOnConnect: false });
    const forwarder = new DnsForwarder(options, udp, tcp);
    udp.on("message", (message, from) => forwarder.#onDatagram(message, from));
    udp.on("error", () => {});
    tcp.on("connection", (socket) => forwarder.#onConnection(socket));
    tcp.on("error", () => {});
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once("error", reject);
        udp.bind({ address: options.address, port, exclusive: true }, () => resolve());
      });
      await new Promise<void>((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen({ host: options.address, port, backlog: 128 }, () => resolve());
      });
    } catch (error) {
      await forwarder.close();
      throw new Error(
        `the sandboxes' DNS forwarder cannot listen on ${options.address}:${port}: ${(error as Error).message}`,
      );
    }
    return forwarder;
  }

  /** @internal (tests) */
  get stats(): DnsForwarderStats {
    return {
      maxQueuedBytes: this.#maxQueuedBytes,
      tcpConnections: this.#tcpTotal,
      inFlight: this.#total,
      datagrams: this.#datagrams,
    };
  }

  /** Closes every TCP connection of `source` (its DNS was just blocked, or it ended). */
  dropSource(source: string): void {
    for (const socket of this.#connections.get(source) ?? []) socket.destroy();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const set of this.#connections.values()) for (const socket of set) socket.destroy();
    await Promise.all([
      new Promise<void>((resolve) => {
        try {
          this.#udp.close(() => resolve());
        } catch {
          resolve();
        }
      }),
      new Promise<void>((resolve) => this.#tcp.close(() => resolve())),
    ]);
  }

  /** Takes a slot of `source`'s in-flight queries; false when it has none left (or its share is taken). */
  #claim(source: string): boolean {
    const now = this.#inFlight.get(source) ?? 0;
    const { inFlight, inFlightPerSource } = this.#limits;
    const sources = this.#inFlight.size + (now === 0 ? 1 : 0);
    if (now >= Math.min(inFlightPerSource, fairShare(inFlight, sources)) || this.#total >= inFlight) return false;
    this.#inFlight.set(source, now + 1);
    this.#total++;
    return true;
  }

  #release(source: string): void {
    const now = (this.#inFlight.get(source) ?? 1) - 1;
    if (now <= 0) this.#inFlight.delete(source);
    else this.#inFlight.set(source, now);
    this.#total--;
  }

  #onDatagram(query: Buffer, from: RemoteInfo): void {
    this.#datagrams++;
    if (this.#closed || from.family !== "IPv4" || !isQuery(query) || !this.#options.allowed(from.address)) return;
    if (!this.#claim(from.address)) return;
    void this.#askUdp(query)
      .then((answer) => {
        // Blocked meanwhile: the answer is dropped too.
        if (answer && !this.#closed && this.#options.allowed(from.address)) {
          this.#udp.send(answer, from.port, from.address, () => {});
        }
      })
      .finally(() => this.#release(from.address));
  }

  /** The first answer of the resolvers, tried in turn; undefined when none answered. */
  async #askUdp(query: Buffer): Promise<Buffer | undefined> {
    for (const upstream of this.#options.upstreams) {
      const answer = await askOneUdp(upstream, query, this.#limits.upstreamTimeoutMs);
      if (answer) return answer;
    }
    return undefined;
  }

  #onConnection(socket: TcpSocket): void {
    const source = socket.remoteAddress ?? "";
    const mine = this.#connections.get(source) ?? new Set<TcpSocket>();
    if (
      this.#closed ||
      socket.remoteFamily !== "IPv4" ||
      !this.#options.allowed(source) ||
      mine.size >=
        Math.min(
          this.#limits.tcpPerSource,
          fairShare(this.#limits.tcp, this.#connections.size + (mine.size === 0 ? 1 : 0)),
        ) ||
      this.#tcpTotal >= this.#limits.tcp
    ) {
      socket.destroy();
      return;
    }
    mine.add(socket);
    this.#connections.set(source, mine);
    this.#tcpTotal++;
    socket.on("close", () => {
      mine.delete(socket);
      if (mine.size === 0 && this.#connections.get(source) === mine) this.#connections.delete(source);
      this.#tcpTotal--;
    });
    socket.on("error", () => {});
    socket.setTimeout(this.#limits.tcpIdleMs, () => socket.destroy());
    let buffered: Buffer = Buffer.alloc(0);
    let busy = false;
    // One query at a time per connection: the next is read once the last is answered and its
    // answer sent (not merely queued: a sandbox that never reads would otherwise make the
    // server queue answers without end).
    const next = () => {
      if (busy || buffered.length < 2) return;
      const length = buffered.readUInt16BE(0);
      if (length > MAX_QUERY_BYTES) return void socket.destroy();
      if (buffered.length < 2 + length) return;
      const query = buffered.subarray(2, 2 + length);
      buffered = buffered.subarray(2 + length);
      if (!isQuery(query) || !this.#options.allowed(source) || !this.#claim(source)) return void socket.destroy();
      busy = true;
      socket.pause();
      void this.#askTcp(query)
        .finally(() => this.#release(source))
        .then(async (answer) => {
          if (!answer || !this.#options.allowed(source) || socket.destroyed) return false;
          const framed = Buffer.alloc(2 + answer.length);
          framed.writeUInt16BE(answer.length, 0);
          answer.copy(framed, 2);
          const sent = writtenOrClosed(socket, framed);
          this.#maxQueuedBytes = Math.max(this.#maxQueuedBytes, socket.writableLength);
          if (socket.writableLength > MAX_QUEUED_BYTES) return false;
          await sent;
          return !socket.destroyed;
        })
        .catch(() => false)
        .then((goOn) => {
          if (!goOn) return void socket.destroy();
          busy = false;
          socket.resume();
          next();
        });
    };
    socket.on("data", (chunk: Buffer) => {
      if (buffered.length + chunk.length > 2 + MAX_QUERY_BYTES) return void socket.destroy();
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      next();
    });
  }

  async #askTcp(query: Buffer): Promise<Buffer | undefined> {
    for (const upstream of this.#options.upstreams) {
      const answer = await askOneTcp(upstream, query, this.#limits.upstreamTimeoutMs);
      if (answer) return answer;
    }
    return undefined;
  }
}

/** Writes `data` to `socket`; resolves once the kernel has taken all of it, or the socket is closed. */
function writtenOrClosed(socket: TcpSocket, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off("close", done);
      resolve();
    };
    socket.on("close", done);
    socket.write(data, done);
  });
}

/** One source's share of `total` among `sources` using it and one more to come (at least 1). */
function fairShare(total: number, sources: number): number {
  return Math.max(1, Math.floor(total / (sources + 1)));
}

/** A standard query: a 12-byte header at least, QR clear, opcode QUERY, within the size limit. */
export function isQuery(message: Buffer): boolean {
  if (message.length < 12 || message.length > MAX_QUERY_BYTES) return false;
  const flags = message[2] as number;
  return (flags & 0x80) === 0 && ((flags >> 3) & 0x0f) === 0;
}

/** Whether `answer` is a response to `query` (same id, QR set). */
function answers(answer: Buffer, query: Buffer): boolean {
  return (
    answer.length >= 12 && answer[0] === query[0] && answer[1] === query[1] && ((answer[2] as number) & 0x80) !== 0
  );
}

function askOneUdp(upstream: Upstream, query: Buffer, timeoutMs: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket({ type: upstream.family === 6 ? "udp6" : "udp4" });
    let done = false;
    const finish = (answer?: Buffer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    const timer = setTimeout(() => finish(), timeoutMs);
    socket.on("error", () => finish());
    socket.on("message", (answer, from) => {
      // From the resolver asked (the socket is connected to it), answering this query.
      if (from.port === upstream.port && answers(answer, query)) finish(answer);
    });
    socket.connect(upstream.port, upstream.address, () => {
      socket.send(query, (error) => {
        if (error) finish();
      });
    });
  });
}

function askOneTcp(upstream: Upstream, query: Buffer, timeoutMs: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: upstream.address, port: upstream.port });
    let done = false;
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (answer?: Buffer) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(timeoutMs, () => finish());
    socket.on("error", () => finish());
    socket.on("close", () => finish());
    socket.on("connect", () => {
      const framed = Buffer.alloc(2 + query.length);
      framed.writeUInt16BE(query.length, 0);
      query.copy(framed, 2);
      socket.write(framed);
    });
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length > 2 + MAX_ANSWER_BYTES) return finish();
      if (buffered.length < 2) return;
      const length = buffered.readUInt16BE(0);
      if (buffered.length < 2 + length) return;
      const answer = Buffer.from(buffered.subarray(2, 2 + length));
      finish(answers(answer, query) ? answer : undefined);
    });
  });
}
