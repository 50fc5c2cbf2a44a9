/**
 * A TCP proxy in front of a server, for tests of dropped connections: it notes how each
 * connection through it began, cuts them all at once (resets: as a broken network path would
 * end them), and stops and starts again on the same port (a server going away and coming back).
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";

export class TcpProxy {
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #port = 0;
  /** The first bytes of every connection accepted (latin1), in order. */
  readonly openings: string[] = [];

  constructor(target: { host: string; port: number } | string) {
    if (typeof target === "string") {
      const url = new URL(target);
      this.#target = { host: url.hostname, port: Number(url.port) };
    } else this.#target = target;
  }

  /** Listens (on the port it had before, once started), answering its URL. */
  async start(): Promise<string> {
    const server = createServer((client) => this.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#port, "127.0.0.1", () => resolve());
    });
    this.#server = server;
    this.#port = (server.address() as { port: number }).port;
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Connections through it whose first bytes include `text`. */
  count(text: string): number {
    return this.openings.filter((opening) => opening.includes(text)).length;
  }

  /** Resets every connection through it, both sides. */
  cut(): void {
    for (const socket of this.#sockets) socket.resetAndDestroy();
    this.#sockets.clear();
  }

  /** Stops listening and cuts every connection. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    this.cut();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    const upstream = createConnection(this.#target);
    this.#sockets.add(client);
    this.#sockets.add(upstream);
    client.once("data", (first: Buffer) => this.openings.push(first.toString("latin1", 0, 200)));
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.pipe(to);
      from.on("error", () => to.destroy());
      from.on("close", () => {
        this.#sockets.delete(from);
        to.destroy();
      });
    }
  }
}
