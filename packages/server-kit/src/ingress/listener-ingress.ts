/**
 * The engine's ingress seam (`SandboxIngress`) over real listeners (Node), the same for the
 * sbx server and the fake once it listens: each sandbox port reached from outside gets a
 * listener on `host` — one open (a tunnel to an exposed port: plain TCP, each connection piped
 * to a connection the target's dialer makes, so HTTP/1.1, HTTP/2, WebSockets and any other
 * protocol pass untouched), one behind the token gateway (connect tokens and service URLs
 * share it: HTTP, checked request by request) — through the target's dialer. Tokens
 * are tokens.ts's; a sandbox's listeners close and its tokens are revoked when it ends.
 */
import { createServer, type Server } from "node:http";
import { type AddressInfo, createServer as createTcpServer, type Socket, type Server as TcpServer } from "node:net";
import type { IngressToken, IngressTokenRequest, IngressTunnel, SandboxIngress } from "../engine/ingress.js";
import { type GatewayRoute, type IngressDialer, IngressGateway } from "./gateway.js";
import type { IngressTokens } from "./tokens.js";

export interface ListenerIngressOptions {
  /** The address the listeners bind (the server's listen host). */
  readonly host: string;
  readonly tokens: IngressTokens;
  readonly dialer: IngressDialer;
  readonly onError?: (error: unknown) => void;
}

type Kind = "tunnel" | "gateway";

interface PortListener {
  readonly server: Server | TcpServer;
  readonly sockets: Set<Socket>;
  readonly url: string;
  readonly host: string;
  readonly port: number;
}

export class ListenerIngress implements SandboxIngress {
  readonly #gateway: IngressGateway;
  readonly #listeners = new Map<string, Promise<PortListener>>();
  #closed = false;

  constructor(readonly options: ListenerIngressOptions) {
    this.#gateway = new IngressGateway({
      dialer: options.dialer,
      ...(options.onError ? { onError: options.onError } : {}),
    });
  }

  async tunnels(sandboxId: string, ports: readonly number[]): Promise<IngressTunnel[]> {
    return Promise.all(
      ports.map(async (containerPort) => {
        const at = await this.#serve("tunnel", sandboxId, containerPort);
        return { containerPort, host: at.host, port: at.port, url: at.url };
      }),
    );
  }

  async createToken(request: IngressTokenRequest): Promise<IngressToken> {
    const at = await this.#serve("gateway", request.sandboxId, request.port);
    const { token, expiresAtMs } = await this.options.tokens.issue(request);
    return { url: at.url, token, expiresAtMs };
  }

  sandboxEnded(sandboxId: string): void {
    this.options.tokens.revokeSandbox(sandboxId);
    for (const [key, made] of this.#listeners) {
      if (key.split(" ")[1] !== sandboxId) continue;
      this.#listeners.delete(key);
      void made.then(closeListener, () => {});
    }
  }

  /** Closes every listener (and the connections through them). */
  async close(): Promise<void> {
    this.#closed = true;
    const made = [...this.#listeners.values()];
    this.#listeners.clear();
    await Promise.all(made.map((m) => m.then(closeListener, () => {})));
  }

  #serve(kind: Kind, sandboxId: string, port: number): Promise<PortListener> {
    if (this.#closed) return Promise.reject(new Error("the ingress is closed"));
    const key = `${kind} ${sandboxId} ${port}`;
    let made = this.#listeners.get(key);
    if (!made) {
      made =
        kind === "gateway"
          ? this.#listen({ sandboxId, port, tokens: this.options.tokens })
          : this.#listenTcp(sandboxId, port);
      made.catch(() => this.#listeners.delete(key));
      this.#listeners.set(key, made);
    }
    return made;
  }

  /** A tunnel: every connection piped to one the dialer makes (closed at once when it cannot). */
  async #listenTcp(sandboxId: string, port: number): Promise<PortListener> {
    const sockets = new Set<Socket>();
    const server = createTcpServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => socket.destroy());
      socket.pause();
      this.options.dialer.dial(sandboxId, port).then(
        (upstream) => {
          sockets.add(upstream as Socket);
          upstream.on("close", () => sockets.delete(upstream as Socket));
          upstream.on("error", () => socket.destroy());
          socket.on("close", () => upstream.destroy());
          upstream.on("close", () => socket.destroy());
          socket.pipe(upstream);
          upstream.pipe(socket);
          socket.resume();
        },
        () => socket.destroy(),
      );
    });
    return await this.#bind(server, sockets);
  }

  async #listen(route: GatewayRoute): Promise<PortListener> {
    const sockets = new Set<Socket>();
    const report = (error: unknown) => this.options.onError?.(error);
    const server = createServer((req, res) => {
      this.#gateway.request(route, req, res).catch(report);
    });
    server.on("upgrade", (req, socket, head) => {
      this.#gateway.upgrade(route, req, socket, head).catch((error) => {
        socket.destroy();
        report(error);
      });
    });
    server.on("connection", (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    return await this.#bind(server, sockets);
  }

  async #bind(server: Server | TcpServer, sockets: Set<Socket>): Promise<PortListener> {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, this.options.host, () => resolve());
    });
    server.unref();
    const address = server.address() as AddressInfo;
    const host = address.address;
    const url = `http://${address.family === "IPv6" ? `[${host}]` : host}:${address.port}`;
    return { server, sockets, url, host, port: address.port };
  }
}

function closeListener(listener: PortListener): Promise<void> {
  return new Promise((resolve) => {
    listener.server.close(() => resolve());
    // Upgraded (WebSocket) connections are no longer the server's to close: end them here.
    for (const socket of listener.sockets) socket.destroy();
  });
}
