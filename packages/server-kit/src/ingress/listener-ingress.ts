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
import type { TunnelDomain } from "./tunnel-domain.js";

export interface ListenerIngressOptions {
  /** The address the listeners bind (the server's listen host). */
  readonly host: string;
  readonly tokens: IngressTokens;
  readonly dialer: IngressDialer;
  readonly onError?: (error: unknown) => void;
  /**
   * Sandbox ports by host name under this domain, on the API's own port, instead of a listener
   * each: tunnels and token URLs are names (tunnel-domain.ts) the front door routes (host-router.ts).
   */
  readonly tunnelDomain?: TunnelDomain | undefined;
  /** The API's own port (a tunnel domain's http URLs name it unless told another), if known now; else see `apiListening`. */
  readonly apiPort?: number | undefined;
}

type Kind = "tunnel" | "gateway";

/** How long a tunnel waits for a client's first bytes before taking it for a protocol where the server speaks first. */
const SNIFF_MS = 300;

/** The start of an HTTP/1.x request: a method, a space, and a request target. */
const HTTP_REQUEST_START = /^[A-Z]{3,10} (\/|\*|https?:\/\/)/;

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
  #apiPort: number | undefined;

  constructor(readonly options: ListenerIngressOptions) {
    this.#gateway = new IngressGateway({
      dialer: options.dialer,
      ...(options.onError ? { onError: options.onError } : {}),
    });
    this.#apiPort = options.apiPort;
  }

  /** The API listens on `port` now (for a tunnel domain's URLs: see TunnelDomainOptions.publicPort). */
  apiListening(port: number): void {
    this.#apiPort = port;
  }

  async tunnels(sandboxId: string, ports: readonly number[]): Promise<IngressTunnel[]> {
    const domain = this.options.tunnelDomain;
    if (domain) {
      return ports.map((containerPort) => {
        const host = domain.hostName("tunnel", sandboxId, containerPort);
        return { containerPort, host, ...domain.endpoint(host, this.#apiPort) };
      });
    }
    return Promise.all(
      ports.map(async (containerPort) => {
        const at = await this.#serve("tunnel", sandboxId, containerPort);
        return { containerPort, host: at.host, port: at.port, url: at.url };
      }),
    );
  }

  async createToken(request: IngressTokenRequest): Promise<IngressToken> {
    const domain = this.options.tunnelDomain;
    if (domain) {
      const host = domain.hostName("gateway", request.sandboxId, request.port);
      const { url } = domain.endpoint(host, this.#apiPort);
      const { token, expiresAtMs } = await this.options.tokens.issue(request);
      return { url, token, expiresAtMs };
    }
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

  /**
   * A tunnel. A connection whose first bytes are an HTTP/1.x request goes through the gateway
   * (no token asked for): request by request, so sbx's token cookies and a caller's
   * X-Verified-User-Data never reach the app — listeners share one host, and browsers send a
   * host's cookies to all its ports, so a tunnel's app would otherwise get the visitor's tokens
   * for other sandboxes. Anything else (plain TCP, HTTP/2 with prior knowledge, a protocol
   * where the server speaks first: nothing from the client within SNIFF_MS) is piped to a
   * connection the dialer makes, untouched.
   */
  async #listenTcp(sandboxId: string, port: number): Promise<PortListener> {
    const sockets = new Set<Socket>();
    const http = this.#httpServer({ sandboxId, port, tokens: undefined });
    const server = createTcpServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => socket.destroy());
      const raw = (first: Buffer | undefined) => {
        this.options.dialer.dial(sandboxId, port).then(
          (upstream) => {
            sockets.add(upstream as Socket);
            upstream.on("close", () => sockets.delete(upstream as Socket));
            upstream.on("error", () => socket.destroy());
            socket.on("close", () => upstream.destroy());
            upstream.on("close", () => socket.destroy());
            if (first) upstream.write(first);
            socket.pipe(upstream);
            upstream.pipe(socket);
          },
          () => socket.destroy(),
        );
      };
      const timer = setTimeout(() => {
        socket.off("data", onFirst);
        socket.pause();
        raw(undefined);
      }, SNIFF_MS);
      const onFirst = (chunk: Buffer) => {
        clearTimeout(timer);
        socket.pause();
        if (HTTP_REQUEST_START.test(chunk.subarray(0, 16).toString("latin1"))) {
          socket.unshift(chunk);
          http.emit("connection", socket);
          socket.resume();
        } else {
          raw(chunk);
        }
      };
      socket.once("data", onFirst);
      socket.once("close", () => clearTimeout(timer));
      socket.resume();
    });
    return await this.#bind(server, sockets);
  }

  async #listen(route: GatewayRoute): Promise<PortListener> {
    const sockets = new Set<Socket>();
    const server = this.#httpServer(route);
    server.on("connection", (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    return await this.#bind(server, sockets);
  }

  /** An HTTP server (not listening itself) whose requests and upgrades go through the gateway for `route`. */
  #httpServer(route: GatewayRoute): Server {
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
    return server;
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
