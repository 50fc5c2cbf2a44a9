/**
 * `sb.tunnel(remotePort)`: a local TCP listener whose accepted connections reach the sandbox's
 * port, all of them over one connection to the server (a port session: port-session.ts) that
 * the tunnel keeps open. The runtime adapters (@sbx/node, @sbx/deno, @sbx/bun) supply only the
 * listener (`ListenLocal`, passed as `ClientDefaults.localTunnel`); browsers have none. Loaded
 * on first use.
 *
 * When the server connection drops, the connections open through it end at once: each local
 * socket is reset (TCP RST where the runtime can send one), as a dropped TCP path would end
 * them; bytes in flight are lost. The tunnel then reconnects in the background (backoff from
 * 100 ms to 2 s) and a local connection that arrives meanwhile waits for the next attempt, so
 * new connections work again once the server is back. It stops trying once the sandbox is gone
 * (NotFoundError, FailedPreconditionError) or the token is refused.
 */
import {
  AuthenticationError,
  FailedPreconditionError,
  InvalidError,
  NotFoundError,
  type SandboxError,
  TunnelError,
  UnsupportedError,
} from "./errors.js";
import type { PortConnection } from "./port-dialer.js";
import type { PortSession } from "./port-session.js";

/** One accepted local connection, as web byte streams. */
export interface LocalConnection extends PortConnection {
  /** Drops the connection at once, so that the local client sees an error (a TCP RST where the runtime can send one). */
  reset(): void;
}

/** A local listener the adapter opened. */
export interface LocalListener {
  /** The port it listens on (the one asked for, or the one the OS chose for 0). */
  readonly port: number;
  /** Stops accepting connections (those already accepted are the tunnel's to end). */
  close(): Promise<void>;
}

/** Opens a TCP listener on 127.0.0.1:`port` (0: any free port) handing each connection to `accept`. */
export type ListenLocal = (port: number, accept: (connection: LocalConnection) => void) => Promise<LocalListener>;

/** A tunnel from a local port to a port inside the sandbox. `await using` closes it. */
export interface LocalTunnel extends AsyncDisposable {
  /** The local port it listens on, on 127.0.0.1. */
  readonly localPort: number;
  /** The port inside the sandbox. */
  readonly remotePort: number;
  /** Stops listening and ends every connection open through it, and its connection to the server. */
  close(): Promise<void>;
}

export interface OpenTunnelOptions {
  readonly listen: ListenLocal;
  readonly localPort: number;
  readonly remotePort: number;
  /** Opens a session to the sandbox's ports (one connection to the server). */
  readonly openSession: (signal: AbortSignal) => Promise<PortSession>;
}

/** The first delay before reconnecting, doubled after each failed attempt up to the last. */
export const RECONNECT_FIRST_MS = 100;
export const RECONNECT_MAX_MS = 2_000;

export async function openLocalTunnel(options: OpenTunnelOptions): Promise<LocalTunnel> {
  const sessions = new SessionKeeper(options.openSession);
  try {
    await sessions.get(); // the sandbox, the token and the server, checked before listening
  } catch (error) {
    sessions.close();
    throw error;
  }
  const open = new Set<{ local: LocalConnection; stop: AbortController }>();
  let closed = false;
  const accept = (local: LocalConnection) => {
    if (closed) return local.reset();
    const entry = { local, stop: new AbortController() };
    open.add(entry);
    void serve(entry.local, entry.stop.signal, sessions, options.remotePort).finally(() => open.delete(entry));
  };
  let listener: LocalListener;
  try {
    listener = await options.listen(options.localPort, accept);
  } catch (error) {
    sessions.close();
    throw new TunnelError(
      `cannot listen on 127.0.0.1:${options.localPort}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error, port: options.remotePort },
    );
  }
  const close = async () => {
    if (closed) return;
    closed = true;
    const stopping = listener.close();
    for (const entry of open) {
      entry.stop.abort();
      entry.local.reset();
    }
    sessions.close();
    await stopping;
  };
  return { localPort: listener.port, remotePort: options.remotePort, close, [Symbol.asyncDispose]: close };
}

/** Pipes one local connection to a connection to the sandbox's port until both ends are done. */
async function serve(local: LocalConnection, stop: AbortSignal, sessions: SessionKeeper, port: number): Promise<void> {
  let remote: PortConnection;
  try {
    remote = await openThrough(sessions, port, stop);
  } catch {
    // Nothing to tell the local client but a reset connection (as a refused port would give).
    local.reset();
    return;
  }
  // A failure either way resets the local socket (the local client sees the connection broken,
  // not a clean end) and the remote stream (RESET): the pipes neither abort the local writable
  // nor cancel the local readable themselves, which would end the socket cleanly.
  let failed = false;
  const fail = () => {
    if (failed) return;
    failed = true;
    local.reset();
  };
  await Promise.all([
    local.readable.pipeTo(remote.writable, { signal: stop, preventCancel: true }).catch(fail),
    remote.readable.pipeTo(local.writable, { signal: stop, preventAbort: true }).catch(fail),
  ]);
}

/**
 * A connection to `port` through the tunnel's session. One whose session dropped before the
 * port answered (the drop not yet seen when it arrived) never reached the port: it is tried
 * once more, on the next session.
 */
async function openThrough(sessions: SessionKeeper, port: number, stop: AbortSignal): Promise<PortConnection> {
  for (let tries = 1; ; tries++) {
    const session = await sessions.get();
    try {
      // Local sockets' reads are fresh buffers, handed over: the session need not copy them.
      return await session.open(port, { signal: stop, handsOverChunks: true });
    } catch (error) {
      if (tries > 1 || !session.over || stop.aborted) throw error;
      sessions.lost(session);
    }
  }
}

/** Errors after which reconnecting cannot help: the sandbox is gone, the token refused. */
function isPermanent(error: unknown): boolean {
  return (
    error instanceof NotFoundError ||
    error instanceof FailedPreconditionError ||
    error instanceof AuthenticationError ||
    error instanceof InvalidError ||
    error instanceof UnsupportedError
  );
}

/**
 * The tunnel's session: opened once, reopened after it drops — in the background with backoff,
 * and at once for a local connection that arrives while none is open and none is being opened
 * (it waits for a pending attempt instead).
 */
class SessionKeeper {
  readonly #open: (signal: AbortSignal) => Promise<PortSession>;
  readonly #stop = new AbortController();
  #current: PortSession | undefined;
  #attempt: Promise<PortSession> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #delayMs = RECONNECT_FIRST_MS;
  #waiting: { resolve: (session: PortSession) => void; reject: (error: unknown) => void }[] = [];
  #closed = false;

  constructor(open: (signal: AbortSignal) => Promise<PortSession>) {
    this.#open = open;
  }

  get(): Promise<PortSession> {
    if (this.#closed) return Promise.reject(new TunnelError("the tunnel is closed"));
    if (this.#current) return Promise.resolve(this.#current);
    if (this.#attempt) return this.#attempt;
    if (this.#timer !== undefined) {
      // A reconnect is due: wait for it rather than adding attempts.
      return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
    }
    return this.#connect();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#stop.abort();
    this.#current?.close();
    this.#current = undefined;
    const error = new TunnelError("the tunnel is closed");
    for (const waiter of this.#waiting.splice(0)) waiter.reject(error);
  }

  #connect(): Promise<PortSession> {
    const attempt = this.#open(this.#stop.signal).then(
      (session) => {
        this.#attempt = undefined;
        if (this.#closed) {
          session.close();
          throw new TunnelError("the tunnel is closed");
        }
        this.#current = session;
        this.#delayMs = RECONNECT_FIRST_MS;
        void session.ended.then((error) => this.#lost(session, error));
        for (const waiter of this.#waiting.splice(0)) waiter.resolve(session);
        return session;
      },
      (error: unknown) => {
        this.#attempt = undefined;
        for (const waiter of this.#waiting.splice(0)) waiter.reject(error);
        this.#retryLater(error);
        throw error;
      },
    );
    this.#attempt = attempt;
    return attempt;
  }

  /** `session` is over, whether or not its `ended` has been seen yet. */
  lost(session: PortSession): void {
    if (this.#current === session) this.#current = undefined;
  }

  #lost(session: PortSession, error: SandboxError | undefined): void {
    if (this.#current !== session) return;
    this.#current = undefined;
    if (error) this.#retryLater(error);
  }

  #retryLater(error: unknown): void {
    if (this.#closed || isPermanent(error) || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect().catch(() => {});
    }, this.#delayMs);
    (this.#timer as { unref?: () => void }).unref?.();
    this.#delayMs = Math.min(this.#delayMs * 2, RECONNECT_MAX_MS);
  }
}
