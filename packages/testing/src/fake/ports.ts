/**
 * The fake's port registry: `fake.onPort(port, handler)` scripts what answers HTTP on a port
 * inside every sandbox (a handler may look at `sandboxId`). A port with a handler "listens":
 * TCP readiness probes pass, tunnels and the token gateway reach it; a port without one
 * refuses, as a real port nobody listens on does.
 */

export interface PortContext {
  readonly sandboxId: string;
  /** The port inside the sandbox. */
  readonly port: number;
}

/** Answers one HTTP request to the port (fetch's `Request` and `Response`). */
export type PortHandler = (request: Request, context: PortContext) => Response | Promise<Response>;

export class PortRegistry {
  readonly #handlers = new Map<number, PortHandler>();

  add(port: number, handler: PortHandler): void {
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new TypeError(`onPort: invalid port ${port}: a whole number from 1 to 65535`);
    }
    if (typeof handler !== "function") throw new TypeError("onPort handler must be a function");
    this.#handlers.set(port, handler);
  }

  remove(port: number): void {
    this.#handlers.delete(port);
  }

  find(port: number): PortHandler | undefined {
    return this.#handlers.get(port);
  }
}
