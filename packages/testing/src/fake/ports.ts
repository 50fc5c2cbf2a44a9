/**
 * The fake's port registry: `fake.onPort(port, handler)` scripts what answers HTTP on a port
 * inside every sandbox (a handler may look at `sandboxId`), `fake.onPortConnection(port,
 * handler)` what takes its raw connections (byte streams: WebSockets, any protocol). A port
 * with either "listens": TCP readiness probes pass, tunnels and the token gateway reach it; a
 * port without one refuses, as a real port nobody listens on does.
 */

export interface PortContext {
  readonly sandboxId: string;
  /** The port inside the sandbox. */
  readonly port: number;
}

/** Answers one HTTP request to the port (fetch's `Request` and `Response`). */
export type PortHandler = (request: Request, context: PortContext) => Response | Promise<Response>;

/** One connection to the port, as the app in the sandbox would accept it: bytes in, bytes out. */
export interface PortConnection {
  /** What the client sends. */
  readonly readable: ReadableStream<Uint8Array>;
  /** What the client receives; closing it ends the connection. */
  readonly writable: WritableStream<Uint8Array>;
}

/** Takes one raw connection to the port. */
export type PortConnectionHandler = (connection: PortConnection, context: PortContext) => void | Promise<void>;

export type PortEntry =
  | { readonly kind: "http"; readonly handler: PortHandler }
  | { readonly kind: "connection"; readonly handler: PortConnectionHandler };

export class PortRegistry {
  readonly #entries = new Map<number, PortEntry>();

  add(port: number, handler: PortHandler): void {
    this.#set(port, "onPort", { kind: "http", handler });
  }

  addConnection(port: number, handler: PortConnectionHandler): void {
    this.#set(port, "onPortConnection", { kind: "connection", handler });
  }

  remove(port: number): void {
    this.#entries.delete(port);
  }

  /** What listens on `port`, if anything. */
  find(port: number): PortEntry | undefined {
    return this.#entries.get(port);
  }

  #set(port: number, what: string, entry: PortEntry): void {
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new TypeError(`${what}: invalid port ${port}: a whole number from 1 to 65535`);
    }
    if (typeof entry.handler !== "function") throw new TypeError(`${what} handler must be a function`);
    this.#entries.set(port, entry);
  }
}
