/**
 * Keeps connections that do nothing from holding the server's descriptors. A connection with
 * no request in flight (none completed yet, or between requests) is "idle": it is closed when
 * it stays idle too long, and only so many idle connections may exist at once — at the cap a
 * new connection drops the oldest idle one, so a real client still gets in while thousands of
 * silent sockets (from the same address, as on loopback) are held open.
 * A request counts from its complete headers (for HTTP/2, after the preface and settings)
 * until its answer is done: long responses (streamed output, long polls) are never cut.
 */
import type { Socket } from "node:net";

export interface ConnectionLimits {
  /**
   * Longest a new connection may take to complete its first request's headers (for HTTP/2
   * also the preface and settings) before it is closed. Default 30 s.
   */
  readonly firstRequestTimeoutMs?: number;
  /** Longest a connection that has completed requests may stay with none in flight. Default 2 min. */
  readonly idleTimeoutMs?: number;
  /** Most idle connections at once; at the cap a new connection drops the oldest. Default 1000. */
  readonly maxIdleConnections?: number;
}

export const DEFAULT_FIRST_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
export const DEFAULT_MAX_IDLE_CONNECTIONS = 1000;
/** How long a session told to go away (GOAWAY) may take to finish before it is dropped. */
const GOAWAY_GRACE_MS = 5_000;

/** What a tracked connection is closed through: its socket, or its HTTP/2 session once it has one. */
interface Closable {
  close(): void;
  destroy(): void;
}

export class TrackedConnection {
  inFlight = 0;
  /** True once a request completed here: such a connection is closed gently (HTTP/2 GOAWAY). */
  served = false;
  timer: NodeJS.Timeout | undefined;
  session: Closable | undefined;
  constructor(readonly socket: Socket) {}
}

export class ConnectionGuard {
  readonly #firstRequestTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #maxIdle: number;
  /** Idle connections, oldest first (a Map keeps insertion order). */
  readonly #idle = new Map<TrackedConnection, true>();
  readonly #all = new Set<TrackedConnection>();

  constructor(limits: ConnectionLimits = {}) {
    this.#firstRequestTimeoutMs = limits.firstRequestTimeoutMs ?? DEFAULT_FIRST_REQUEST_TIMEOUT_MS;
    this.#idleTimeoutMs = limits.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#maxIdle = Math.max(1, limits.maxIdleConnections ?? DEFAULT_MAX_IDLE_CONNECTIONS);
  }

  /** Starts tracking a just-accepted socket (idle until its first request). */
  accept(socket: Socket): TrackedConnection {
    const connection = new TrackedConnection(socket);
    this.#all.add(connection);
    socket.once("close", () => {
      clearTimeout(connection.timer);
      this.#idle.delete(connection);
      this.#all.delete(connection);
    });
    this.#becomeIdle(connection, this.#firstRequestTimeoutMs);
    // At the cap the oldest idle connection makes room: a flood of silent sockets cannot keep
    // a new client out, and the server's descriptors stay bounded.
    while (this.#idle.size > this.#maxIdle) {
      const oldest = this.#idle.keys().next().value as TrackedConnection;
      this.#close(oldest);
    }
    return connection;
  }

  /** The connection's HTTP/2 session, which closing goes through from now on. */
  attachSession(connection: TrackedConnection, session: Closable): void {
    connection.session = session;
  }

  /**
   * Counts `res` as a request in flight on `connection` until its answer is complete (or the
   * request is gone): a refused request whose client keeps its stream open does not keep
   * the connection busy.
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

  #requestStarted(connection: TrackedConnection): void {
    if (connection.inFlight++ > 0) return;
    clearTimeout(connection.timer);
    this.#idle.delete(connection);
  }

  #requestEnded(connection: TrackedConnection): void {
    connection.served = true;
    if (--connection.inFlight > 0 || connection.socket.destroyed) return;
    this.#becomeIdle(connection, this.#idleTimeoutMs);
  }

  /** Closes every connection at once (the server is stopping). */
  destroyAll(): void {
    for (const connection of this.#all) connection.socket.destroy();
  }

  #becomeIdle(connection: TrackedConnection, timeoutMs: number): void {
    this.#idle.delete(connection); // re-inserted as the newest
    this.#idle.set(connection, true);
    clearTimeout(connection.timer);
    connection.timer = setTimeout(() => this.#close(connection), timeoutMs).unref();
  }

  #close(connection: TrackedConnection): void {
    clearTimeout(connection.timer);
    this.#idle.delete(connection);
    // A session that served requests gets a GOAWAY, so its client opens a new one for the
    // next call instead of failing it; anything else is simply dropped.
    const session = connection.session;
    if (session && connection.served) {
      session.close();
      // Streams whose answers are done but whose clients never ended them keep a closing
      // session open: they get a moment, then the session goes.
      connection.timer = setTimeout(() => session.destroy(), GOAWAY_GRACE_MS).unref();
    } else if (session) session.destroy();
    else connection.socket.destroy();
  }
}
