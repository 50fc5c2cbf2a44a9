/**
 * `sb.tunnel(remotePort)`: a local TCP listener whose every accepted connection opens its own
 * connection to the sandbox's port (`sb.connect`) and is piped to it both ways. The runtime
 * adapters (@sbx/node, @sbx/deno, @sbx/bun) supply only the listener (`ListenLocal`, passed as
 * `ClientDefaults.localTunnel`); browsers have none. Connections are not multiplexed: each is
 * one WebSocket, so a dropped server connection ends the connections open through it, and new
 * local connections work again once the server is back. Loaded on first use.
 */
import { TunnelError } from "./errors.js";
import type { PortConnection } from "./port-dialer.js";

/** One accepted local connection, as web byte streams. */
export interface LocalConnection extends PortConnection {
  /** Drops the connection at once (both directions). */
  close(): void;
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
  /** Stops listening and ends every connection open through it. */
  close(): Promise<void>;
}

export interface OpenTunnelOptions {
  readonly listen: ListenLocal;
  readonly localPort: number;
  readonly remotePort: number;
  /** Opens the connection to the sandbox's port for one local connection. */
  readonly connect: (signal: AbortSignal) => Promise<PortConnection>;
}

export async function openLocalTunnel(options: OpenTunnelOptions): Promise<LocalTunnel> {
  const open = new Set<{ local: LocalConnection; stop: AbortController }>();
  let closed = false;
  const accept = (local: LocalConnection) => {
    if (closed) return local.close();
    const entry = { local, stop: new AbortController() };
    open.add(entry);
    void serve(entry.local, entry.stop.signal, options.connect).finally(() => open.delete(entry));
  };
  let listener: LocalListener;
  try {
    listener = await options.listen(options.localPort, accept);
  } catch (error) {
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
      entry.local.close();
    }
    await stopping;
  };
  return { localPort: listener.port, remotePort: options.remotePort, close, [Symbol.asyncDispose]: close };
}

/** Pipes one local connection to its own connection to the sandbox's port until both ends are done. */
async function serve(
  local: LocalConnection,
  stop: AbortSignal,
  connect: (signal: AbortSignal) => Promise<PortConnection>,
): Promise<void> {
  let remote: PortConnection;
  try {
    remote = await connect(stop);
  } catch {
    // Nothing to tell the local client but a closed connection (as a refused port would).
    local.close();
    return;
  }
  // A failure either way ends both: the pipes are aborted, which cancels and aborts their ends.
  const end = new AbortController();
  const onStop = () => end.abort();
  stop.addEventListener("abort", onStop, { once: true });
  const fail = () => {
    end.abort();
    local.close();
  };
  await Promise.all([
    local.readable.pipeTo(remote.writable, { signal: end.signal }).catch(fail),
    remote.readable.pipeTo(local.writable, { signal: end.signal }).catch(fail),
  ]);
  stop.removeEventListener("abort", onStop);
}
