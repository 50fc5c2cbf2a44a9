/**
 * Keeps connections that do nothing useful from holding the server's descriptors and memory.
 *
 * A request counts as "in flight" only once it was accepted (its token checked: see listen.ts)
 * and until its answer is done: long answers (streamed output, long polls) are never cut, and
 * refused requests never keep a connection busy. A connection with no accepted request in
 * flight is "waiting": "silent" until its first accepted request, "idle" between requests.
 * Waiting connections are closed when they wait too long, and only so many may exist at once:
 * at the cap a new connection drops the oldest silent one (else the oldest idle one), so a real
 * client still gets in while thousands of silent sockets are held open, and clients that got in
 * keep their sessions. One remote address may hold only so many silent connections, so a flood
 * from one address drops its own sockets before anyone else's.
 *
 * Beyond that: a hard cap on all connections, and a connection whose answer has bytes waiting to
 * be sent that make no progress for a while (a client that stopped reading, or an HTTP/2 client
 * that never opens its flow-control window) is dropped.
 */
import type { Socket } from "node:net";
import type { HostedLimits } from "./hosted-budget.js";

export interface ConnectionLimits {
  /**
   * Longest a new connection may wait for its first accepted request (for HTTP/2 also the
   * preface and settings) before it is closed; refused requests do not count. Default 30 s.
   */
  readonly firstRequestTimeoutMs?: number;
  /** Longest a connection that has completed requests may stay with none in flight. Default 2 min. */
  readonly idleTimeoutMs?: number;
  /** Most waiting (silent or idle) connections at once; at the cap a new connection drops the oldest. Default 1000. */
  readonly maxIdleConnections?: number;
  /** Most silent connections from one remote address (at most maxIdleConnections). Default 250. */
  readonly maxSilentConnectionsPerAddress?: number;
  /**
   * Most connections of any kind. At the cap a new connection drops the oldest waiting one; when
   * every connection has an accepted request in flight, the new one is closed at once. Default 10,000.
   */
  readonly maxConnections?: number;
  /** Longest an answer's pending bytes may make no progress before the connection is dropped. Default 60 s. */
  readonly responseStallTimeoutMs?: number;
  /** The budget of requests to hosted names (listen.ts's hostRouter: a tunnel domain's sandbox names). */
  readonly hosted?: HostedLimits;
}

export const DEFAULT_FIRST_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
export const DEFAULT_MAX_IDLE_CONNECTIONS = 1000;
export const DEFAULT_MAX_SILENT_CONNECTIONS_PER_ADDRESS = 250;
export const DEFAULT_MAX_CONNECTIONS = 10_000;
export const DEFAULT_RESPONSE_STALL_TIMEOUT_MS = 60_000;
/** How long a session told to go away (GOAWAY) may take to finish before it is dropped. */
const GOAWAY_GRACE_MS = 5_000;

/** What a tracked connection is closed through: its socket, or its HTTP/2 session once it has one. */
interface Closable {
  close(): void;
  destroy(): void;
  readonly closed?: boolean;
}

/** An HTTP/2 stream, as far as stall detection needs it. */
interface WatchedStream {
  readonly writableLength: number;
  setTimeout(ms: number): unknown;
  on(event: "timeout", listener: () => void): unknown;
}

export class TrackedConnection {
  inFlight = 0;
  /** True once an accepted request completed here: such a connection is closed gently (HTTP/2 GOAWAY). */
  served = false;
  timer: NodeJS.Timeout | undefined;
  session: Closable | undefined;
  /** True once told to go away after a refused request. */
  goingAway = false;
  /** HTTP/1.1 stall detection: what the socket had sent when its pending bytes were last seen to move. */
  stall: { progress: string; since: number } | undefined;
  readonly address: string;
  constructor(readonly socket: Socket) {
    this.address = socket.remoteAddress ?? "";
  }
}

export class ConnectionGuard {
  readonly #firstRequestTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #maxWaiting: number;
  readonly #maxSilentPerAddress: number;
  readonly #maxConnections: number;
  readonly #stallTimeoutMs: number;
  /** Connections with no accepted request yet, oldest first (a Map keeps insertion order). */
  readonly #silent = new Map<TrackedConnection, true>();
  readonly #silentByAddress = new Map<string, Map<TrackedConnection, true>>();
  /** Connections that served requests and have none in flight, oldest first. */
  readonly #idle = new Map<TrackedConnection, true>();
  readonly #all = new Set<TrackedConnection>();
  readonly #stallSweep: NodeJS.Timeout;

  constructor(limits: ConnectionLimits = {}) {
    this.#firstRequestTimeoutMs = limits.firstRequestTimeoutMs ?? DEFAULT_FIRST_REQUEST_TIMEOUT_MS;
    this.#idleTimeoutMs = limits.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#maxWaiting = Math.max(1, limits.maxIdleConnections ?? DEFAULT_MAX_IDLE_CONNECTIONS);
    this.#maxSilentPerAddress = Math.min(
      this.#maxWaiting,
      Math.max(1, limits.maxSilentConnectionsPerAddress ?? DEFAULT_MAX_SILENT_CONNECTIONS_PER_ADDRESS),
    );
    this.#maxConnections = Math.max(1, limits.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
    this.#stallTimeoutMs = Math.max(1, limits.responseStallTimeoutMs ?? DEFAULT_RESPONSE_STALL_TIMEOUT_MS);
    this.#stallSweep = setInterval(() => this.#sweepStalledSockets(), Math.max(10, this.#stallTimeoutMs / 4));
    this.#stallSweep.unref();
  }

  /** The most connections at once (see ConnectionLimits.maxConnections). */
  get maxConnections(): number {
    return this.#maxConnections;
  }

  /** Starts tracking a just-accepted socket (silent until its first accepted request). */
  accept(socket: Socket): TrackedConnection {
    const connection = new TrackedConnection(socket);
    this.#all.add(connection);
    socket.once("close", () => {
      clearTimeout(connection.timer);
      this.#stopWaiting(connection);
      this.#all.delete(connection);
    });
    this.#wait(connection, this.#firstRequestTimeoutMs);
    // A flood from one address drops its own oldest silent sockets first; at the cap the oldest
    // waiting connection makes room, silent ones before idle ones.
    const sameAddress = this.#silentByAddress.get(connection.address);
    while (sameAddress && sameAddress.size > this.#maxSilentPerAddress) this.#close(oldest(sameAddress));
    while (this.#silent.size + this.#idle.size > this.#maxWaiting)
      this.#close(this.#oldestWaiting() as TrackedConnection);
    // Every other connection busy with accepted requests: this one cannot be served.
    if (this.#all.size > this.#maxConnections) this.#close(this.#oldestWaiting(connection) ?? connection);
    return connection;
  }

  /** The connection's HTTP/2 session, which closing goes through from now on. */
  attachSession(connection: TrackedConnection, session: Closable): void {
    connection.session = session;
  }

  /**
   * Counts `res` (an accepted request's answer) as in flight on `connection` until the answer
   * is complete (or the request is gone).
   */
  track(connection: TrackedConnection, res: { once(event: "finish" | "close", listener: () => void): unknown }): void {
    this.#requestStarted(connection);
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.#requestEnded(connection);
    };
    res.once("finish", end);
    res.once("close", end);
  }

  /**
   * A request on this HTTP/2 connection was refused: the session is told to go away, and is
   * dropped shortly after unless an accepted request is in flight (refused answers that cannot
   * be delivered, e.g. to a client that never opens its flow-control window, must not keep it).
   */
  refusedOnSession(connection: TrackedConnection): void {
    const session = connection.session;
    if (!session || connection.goingAway) return;
    connection.goingAway = true;
    if (!session.closed) session.close();
    setTimeout(() => {
      if (connection.inFlight === 0) this.#destroy(connection);
    }, GOAWAY_GRACE_MS).unref();
  }

  /**
   * Drops `connection` when `stream` (an HTTP/2 answer) has bytes waiting that make no progress
   * for the stall timeout. Node's stream timeout restarts on every byte read or sent, and
   * checks a pending write's progress before firing.
   */
  watchStream(connection: TrackedConnection, stream: WatchedStream): void {
    stream.on("timeout", () => {
      if (stream.writableLength > 0) this.#destroy(connection);
      else stream.setTimeout(this.#stallTimeoutMs); // nothing to send (a long poll): keep watching
    });
    stream.setTimeout(this.#stallTimeoutMs);
  }

  /** Closes every connection at once (the server is stopping). */
  destroyAll(): void {
    clearInterval(this.#stallSweep);
    for (const connection of this.#all) connection.socket.destroy();
  }

  #requestStarted(connection: TrackedConnection): void {
    if (connection.inFlight++ > 0) return;
    clearTimeout(connection.timer);
    this.#stopWaiting(connection);
  }

  #requestEnded(connection: TrackedConnection): void {
    connection.served = true;
    if (--connection.inFlight > 0 || connection.socket.destroyed) return;
    this.#wait(connection, this.#idleTimeoutMs);
  }

  #wait(connection: TrackedConnection, timeoutMs: number): void {
    this.#stopWaiting(connection); // re-inserted as the newest
    if (connection.served) this.#idle.set(connection, true);
    else {
      this.#silent.set(connection, true);
      const sameAddress = this.#silentByAddress.get(connection.address) ?? new Map<TrackedConnection, true>();
      this.#silentByAddress.set(connection.address, sameAddress);
      sameAddress.set(connection, true);
    }
    clearTimeout(connection.timer);
    connection.timer = setTimeout(() => this.#close(connection), timeoutMs).unref();
  }

  #stopWaiting(connection: TrackedConnection): void {
    this.#idle.delete(connection);
    if (!this.#silent.delete(connection)) return;
    const sameAddress = this.#silentByAddress.get(connection.address);
    sameAddress?.delete(connection);
    if (sameAddress?.size === 0) this.#silentByAddress.delete(connection.address);
  }

  /** The oldest silent connection, else the oldest idle one (never `except`). */
  #oldestWaiting(except?: TrackedConnection): TrackedConnection | undefined {
    for (const waiting of [this.#silent, this.#idle]) {
      for (const connection of waiting.keys()) if (connection !== except) return connection;
    }
    return undefined;
  }

  /**
   * HTTP/1.1 answers: a socket with bytes waiting to be sent whose progress (bytes handed to
   * the kernel, bytes libuv still queues) has not changed for the stall timeout is dropped.
   * (HTTP/2 streams are watched one by one: see watchStream.)
   */
  #sweepStalledSockets(): void {
    const now = Date.now();
    for (const connection of this.#all) {
      const socket = connection.socket;
      if (connection.session || socket.destroyed || socket.writableLength === 0) {
        connection.stall = undefined;
        continue;
      }
      const queued = (socket as unknown as { _handle?: { writeQueueSize?: number } })._handle?.writeQueueSize;
      const progress = `${socket.bytesWritten}:${queued ?? ""}`;
      if (connection.stall?.progress !== progress) connection.stall = { progress, since: now };
      else if (now - connection.stall.since >= this.#stallTimeoutMs) this.#destroy(connection);
    }
  }

  /**
   * Drops a connection now. A destroyed HTTP/2 session only ends its socket's writing side,
   * which a client that never reads or closes would keep open: the socket goes too.
   */
  #destroy(connection: TrackedConnection): void {
    clearTimeout(connection.timer);
    this.#stopWaiting(connection);
    connection.session?.destroy();
    connection.socket.destroy();
  }

  #close(connection: TrackedConnection): void {
    clearTimeout(connection.timer);
    this.#stopWaiting(connection);
    // A session that served requests gets a GOAWAY, so its client opens a new one for the
    // next call instead of failing it; anything else is simply dropped.
    const session = connection.session;
    if (session && connection.served) {
      session.close();
      // Streams whose answers are done but whose clients never ended them keep a closing
      // session open: they get a moment, then the session goes.
      connection.timer = setTimeout(() => this.#destroy(connection), GOAWAY_GRACE_MS).unref();
    } else this.#destroy(connection);
  }
}

function oldest(connections: Map<TrackedConnection, true>): TrackedConnection {
  return connections.keys().next().value as TrackedConnection;
}
